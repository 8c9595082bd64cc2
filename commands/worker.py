"""`flask --app wsgi worker run --provider NAME [--once]`: one provider's outbound worker."""

from __future__ import annotations

import sys
import threading

import click
from flask import current_app
from flask.cli import AppGroup

from services import metrics
from services.db import utcnow
from services.worker.loop import ALL, PROVIDERS, Worker, run_workers, stop_on_signals

group = AppGroup("worker", help="Outbound workers: notifications, merchant webhooks, reconciliation.")


@group.command("run")
@click.option("--provider", required=True, type=click.Choice((*PROVIDERS, ALL)),
              help="Whose work to do; `all` runs every provider in this one process (for local use).")
@click.option("--once", is_flag=True, help="Process what is due now, then exit.")
def run(provider: str, once: bool) -> None:
    """Deliver the provider's outbox and reconcile its payments until SIGTERM/SIGINT."""
    app = current_app._get_current_object()
    clock = app.config.get("CLOCK", utcnow)
    stop = threading.Event()
    names = PROVIDERS if provider == ALL else (provider,)
    workers = [Worker(name, app.config["SETTINGS"], clock, stop)
               for name in names]
    try:
        with stop_on_signals(stop):
            run_workers(workers, once)
    finally:
        # Other processes share the metrics directory (gunicorn, the other providers' workers).
        metrics.process_exiting()
    if once and any(worker.failures for worker in workers):
        sys.exit(1)
