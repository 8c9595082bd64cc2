// The Mini App page: the catalogue, the buyer's balance, subscription and orders, and buying.
// Plain script, no build step. Every API call carries Telegram's signed init data; the server
// trusts nothing else the page sends (initDataUnsafe is never used).
(function () {
  "use strict";

  var tg = window.Telegram && window.Telegram.WebApp;
  var root = document.getElementById("app");
  var urls = {catalog: root.dataset.catalogUrl, me: root.dataset.meUrl, orders: root.dataset.ordersUrl,
              cancel: root.dataset.cancelUrl};
  var PROVIDERS = {sbp: "SBP", yookassa: "Card", telegram: "Stars", cryptobot: "Crypto"};
  var SYMBOLS = {RUB: "₽", XTR: "⭐"};
  var catalog = {unit: "", products: []};
  var shownOrderId = null;
  var refreshing = null;

  function byId(id) { return document.getElementById(id); }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Amounts arrive as exact JSON numbers; roubles are shown with their kopecks (49.9 → 49.90).
  function money(amount, currency) {
    var shown = currency === "RUB" && !Number.isInteger(amount) ? amount.toFixed(2) : String(amount);
    return shown + " " + (SYMBOLS[currency] || currency);
  }

  function date(iso) {
    return new Date(iso).toLocaleDateString(undefined, {year: "numeric", month: "short", day: "numeric"});
  }

  function notice(text, isError) {
    var box = byId("notice");
    box.textContent = text || "";
    box.className = "notice" + (isError ? " error" : "");
    box.hidden = !text;
  }

  // Telegram's colours as CSS variables, so app.css follows the user's theme (and its changes).
  function applyTheme() {
    var params = (tg && tg.themeParams) || {};
    Object.keys(params).forEach(function (key) {
      document.documentElement.style.setProperty("--tg-theme-" + key.replace(/_/g, "-"), params[key]);
    });
  }

  async function api(url, options) {
    var init = Object.assign({}, options);
    init.headers = Object.assign({"Authorization": "tma " + tg.initData}, init.headers);
    var response = await fetch(url, init);
    var body = await response.json();
    if (!response.ok) {
      var message = body.error && body.error.message;
      throw new Error(message || "Request failed (" + response.status + ")");
    }
    return body;
  }

  function grants(product) {
    var parts = [];
    if (product.subscription) parts.push(product.subscription.days + " days of " + product.subscription.plan);
    if (product.credit) parts.push("+" + product.credit + " " + catalog.unit);
    return parts.join(" · ");
  }

  function renderProducts() {
    var list = byId("products");
    list.replaceChildren();
    catalog.products.forEach(function (product) {
      var card = element("article", "product");
      card.dataset.productId = product.id;
      card.append(element("h3", "", product.title));
      if (product.description) card.append(element("p", "", product.description));
      card.append(element("p", "meta", grants(product)));
      var buttons = element("div", "buy");
      product.prices.forEach(function (price) {
        var button = element("button", "", (PROVIDERS[price.provider] || price.provider) + " · " +
                             money(price.amount, price.currency));
        button.type = "button";
        button.dataset.provider = price.provider;
        button.addEventListener("click", function () { buy(product, price); });
        buttons.append(button);
      });
      card.append(buttons);
      list.append(card);
    });
  }

  function setBusy(busy) {
    document.querySelectorAll(".buy button").forEach(function (button) { button.disabled = busy; });
  }

  async function buy(product, price) {
    setBusy(true);
    notice("");
    try {
      var order = await api(urls.orders, {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({productId: product.id, provider: price.provider}),
      });
      openPayment(order, product);
      await refresh();
    } catch (error) {
      notice(error.message, true);
    } finally {
      setBusy(false);
    }
  }

  // Each provider's way to pay; the status is read again when the buyer comes back to the page.
  function openPayment(order, product) {
    if (order.invoiceLink) {
      tg.openInvoice(order.invoiceLink, function () { refresh(); });
    } else if (order.qr) {
      showQr(order, product);
    } else if (order.payUrl) {
      tg.openLink(order.payUrl);
      if (order.instructions) notice(order.instructions);
    }
  }

  function showQr(order, product) {
    shownOrderId = order.orderId;
    byId("payment-text").textContent = "Pay " + money(order.amount, order.currency) + " for " + product.title +
      ": scan the code with your bank app, or open it on this phone.";
    byId("payment-qr").src = order.qrImage;
    byId("payment-open").onclick = function () { tg.openLink(order.qr); };
    byId("payment").hidden = false;
  }

  function renderSubscription(subscription) {
    byId("subscription").hidden = !subscription;
    if (!subscription) return;
    var active = Date.parse(subscription.expiresAt) > Date.now();
    byId("subscription-status").textContent = subscription.plan + ": " +
      (active ? "active until " : "expired on ") + date(subscription.expiresAt);
    byId("subscription-link").hidden = !subscription.subscriptionUrl;
    byId("subscription-pending").hidden = !!subscription.subscriptionUrl || !active;
    byId("subscription-url").value = subscription.subscriptionUrl || "";
    byId("subscription-renews").hidden = !subscription.recurring;
  }

  function titleOf(order) {
    var productId = order.metadata && order.metadata.productId;
    var product = catalog.products.find(function (item) { return item.id === productId; });
    return product ? product.title : order.orderId;
  }

  function renderOrders(orders) {
    var list = byId("orders");
    list.replaceChildren();
    orders.forEach(function (order) {
      var item = element("li");
      item.dataset.orderId = order.orderId;
      var text = element("div");
      text.append(element("div", "", titleOf(order)));
      text.append(element("div", "meta", money(order.amount, order.currency) + " · " +
                          (PROVIDERS[order.provider] || order.provider) + " · " + date(order.createdAt)));
      item.append(text, element("span", "status " + order.status, order.status));
      list.append(item);
    });
    byId("no-orders").hidden = orders.length > 0;
  }

  function render(me) {
    byId("balance").textContent = me.balance + " " + me.unit;
    renderSubscription(me.subscription);
    renderOrders(me.orders);
    var shown = me.orders.find(function (order) { return order.orderId === shownOrderId; });
    if (shown && shown.status !== "pending") {
      byId("payment").hidden = true;
      shownOrderId = null;
      notice(shown.status === "paid" ? "Payment received, thank you!" : "The order is " + shown.status + ".");
    }
  }

  // One read at a time: returning to the page and closing an invoice may both ask at once.
  function refresh() {
    if (!refreshing) {
      refreshing = api(urls.me).then(render).catch(function (error) { notice(error.message, true); })
        .finally(function () { refreshing = null; });
    }
    return refreshing;
  }

  async function stopRenewal() {
    byId("stop-renewal").disabled = true;
    try {
      var answer = await api(urls.cancel, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"});
      notice(answer.cancelled ? "Your subscription will not renew; what you paid for runs to its end."
                              : "Stopping the renewal: it is done in a moment.", false);
      await refresh();
    } catch (error) {
      notice(error.message, true);
    } finally {
      byId("stop-renewal").disabled = false;
    }
  }

  async function copyLink() {
    var input = byId("subscription-url");
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (error) {
      // Some Telegram web views refuse the async clipboard; the selection copy still works there.
      input.select();
      document.execCommand("copy");
    }
    byId("copy-link").textContent = "Copied";
    setTimeout(function () { byId("copy-link").textContent = "Copy"; }, 2000);
  }

  async function start() {
    applyTheme();
    if (!tg || !tg.initData) {
      notice("Open this page from the bot in Telegram.", true);
      return;
    }
    tg.ready();
    tg.expand();
    tg.onEvent("themeChanged", applyTheme);
    tg.onEvent("invoiceClosed", refresh);
    tg.onEvent("activated", refresh);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") refresh();
    });
    byId("payment-done").addEventListener("click", refresh);
    byId("copy-link").addEventListener("click", copyLink);
    byId("stop-renewal").addEventListener("click", stopRenewal);
    try {
      catalog = await api(urls.catalog);
      renderProducts();
      await refresh();
    } catch (error) {
      notice(error.message, true);
    }
  }

  start();
})();
