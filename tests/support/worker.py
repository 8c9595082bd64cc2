"""Helpers for worker tests: apps wired to the fake merchant and Telegram, paid orders, worker runs."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from services.db import db, transaction, utcnow
from services.models import DeliveryAttempt, OutboxMessage
from tests.conftest import AUTH, FrozenClock
from tests.support.live import BIN, ROOT

# How long a worker process may take to finish or to make its deliveries.
PROCESS_TIMEOUT = 60


def wired_env(merchant=None, telegram=None) -> dict[str, str]:
    """Settings pointing merchant webhooks and the bot at the fakes given."""
    env: dict[str, str] = {}
    if merchant is not None:
        env.update(MERCHANT_WEBHOOK_URL=merchant.hook_url, MERCHANT_WEBHOOK_SECRET=merchant.secret)
    if telegram is not None:
        env.update(TELEGRAM_BOT_TOKEN=telegram.bot_token, TELEGRAM_API_URL=telegram.api_url)
    return env


def frozen_now(app) -> FrozenClock:
    """A frozen clock at the real time (receivers check webhook-timestamp against their own clock)."""
    clock = FrozenClock(utcnow())
    app.config["CLOCK"] = clock
    return clock


def paid_order(client, order_id: str = "order-1", **body: Any) -> dict[str, Any]:
    """Create an SBP sandbox payment through the API and pay it through the sandbox."""
    created = client.post("/api/payment", json={"amount": 100, "orderId": order_id, **body}, headers=AUTH)
    assert created.status_code == 201, created.get_json()
    paid = client.post(f"/sandbox/sbp/{created.get_json()['qrcId']}/pay", headers=AUTH)
    assert paid.status_code == 200, paid.get_json()
    return created.get_json()


def run_worker(app, provider: str) -> None:
    """`flask worker run --provider P --once` in this process, with the app's clock."""
    result = app.test_cli_runner().invoke(args=["worker", "run", "--provider", provider, "--once"])
    assert result.exit_code == 0, (result.output, result.exception)


def outbox(app, channel: str | None = None) -> list[OutboxMessage]:
    """The outbox rows (of one channel), oldest first."""
    statement = db.select(OutboxMessage).order_by(OutboxMessage.id)
    if channel:
        statement = statement.where(OutboxMessage.channel == channel)
    with app.app_context(), transaction():
        return db.session.execute(statement).scalars().all()


def attempts(app, outbox_id: int) -> list[DeliveryAttempt]:
    """The recorded attempts of one outbox row, in order."""
    with app.app_context(), transaction():
        return db.session.execute(db.select(DeliveryAttempt).where(DeliveryAttempt.outbox_pk == outbox_id)
                                  .order_by(DeliveryAttempt.number)).scalars().all()


def worker_process(env: dict[str, str], provider: str, once: bool = False, log_path=None) -> subprocess.Popen:
    """A real `flask --app wsgi worker run` process on the given settings."""
    args = [str(BIN / "flask"), "--app", "wsgi", "worker", "run", "--provider", provider]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(args + (["--once"] if once else []), cwd=ROOT, env={**os.environ, **env},
                                stdout=log, stderr=subprocess.STDOUT)
    finally:
        if log_path:
            log.close()


def wait_for_exit(process: subprocess.Popen) -> int:
    """The process's exit code; killed (and the test failed) if it runs past PROCESS_TIMEOUT."""
    try:
        return process.wait(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
