"""The Telegram Mini App storefront: init data authentication, the product catalogue, the buyer's view."""
