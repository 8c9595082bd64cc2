"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

import sys

from webhook_app import create_app
from webhook_config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    sys.exit(f"configuration error: {error}")
