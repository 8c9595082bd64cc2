"""One provider's worker: the duties it owns and the loop that runs them until told to stop."""

from __future__ import annotations

import logging
import os
import random
import secrets
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from flask import current_app

from services import events, orders, outbox
from services.providers import registry as providers
from services.worker import registry, runtime
from webhook_config import Settings

logger = logging.getLogger(__name__)

# One worker per provider, plus the core's own outbound channels.
PROVIDERS = (*providers.NAMES, *outbox.CORE_CHANNELS)
ALL = "all"
BATCH_SIZE = 10


@dataclass
class Context:
    """What a worker's duties share: settings, the clock, the stop flag and the worker's identity."""

    settings: Settings
    clock: Callable[[], datetime]
    stop: threading.Event
    owner: str
    rng: random.Random = field(default_factory=random.Random)


class OutboxDuty:
    """Deliver the due rows of one outbox channel, a batch at a time."""

    def __init__(self, channel: str, context: Context):
        self.channel = channel
        self.name = f"outbox:{channel}"
        self.handlers = registry.build_handlers(channel, context.settings)
        self.idle_noted = False

    def run(self, ctx: Context) -> int:
        if not self.handlers:
            if not self.idle_noted:
                logger.warning("no handler is registered for outbox channel %r: its messages stay pending",
                               self.channel)
                self.idle_noted = True
            return 0
        lease = timedelta(seconds=ctx.settings.outbox_lease_seconds)
        jobs = outbox.claim(self.channel, ctx.owner, ctx.clock(), BATCH_SIZE, lease)
        budget = timedelta(seconds=ctx.settings.http_timeout)
        for index, job in enumerate(jobs):
            # Stop between deliveries, never during one; and never start one the lease may not cover.
            if ctx.stop.is_set() or ctx.clock() + budget >= job.lease_until:
                outbox.release(jobs[index:], ctx.owner)
                return index
            runtime.deliver(job, registry.handler_for(self.handlers, job.kind), ctx.owner,
                            ctx.settings.outbox_retry_schedule, ctx.clock, ctx.rng)
        return len(jobs)


class PeriodicDuty:
    """Run a reconciliation or expiry task at most once per RECONCILE_INTERVAL_SECONDS."""

    def __init__(self, name: str, task: Callable[[Settings, datetime], int]):
        self.name = name
        self.task = task
        self.next_run: datetime | None = None

    def run(self, ctx: Context) -> int:
        now = ctx.clock()
        if self.next_run is not None and now < self.next_run:
            return 0
        self.next_run = now + timedelta(seconds=ctx.settings.reconcile_interval_seconds)
        self.task(ctx.settings, now)
        # Periodic work never keeps the loop from idling: its next turn is a timer away anyway.
        return 0


def duties_for(provider: str, ctx: Context) -> list[OutboxDuty | PeriodicDuty]:
    """What each provider's worker does: deliver its channel, run its periodic tasks, retry its failed events,
    then expire its unpaid orders (reconciliation and retries run before expiry, so a missed payment wins)."""
    if provider in outbox.CORE_CHANNELS:
        return [OutboxDuty(provider, ctx)]
    if provider not in providers.NAMES:
        raise ValueError(f"unknown provider {provider!r}")
    plugin = providers.plugin(provider)
    duties: list[OutboxDuty | PeriodicDuty] = [OutboxDuty(provider, ctx)] if plugin.handlers else []
    duties += [PeriodicDuty(f"{kind}:{provider}", task) for kind, task in plugin.periodic(ctx.settings).items()]
    duties.append(PeriodicDuty(f"retry:{provider}", lambda s, now: events.retry_failed(provider, s, now)))
    duties.append(PeriodicDuty(f"expire:{provider}", lambda s, now: orders.expire_orders(provider, s, now)))
    return duties


def worker_id(provider: str) -> str:
    """A lease owner unique to this worker: host, process, provider and a random tag."""
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{provider}:{secrets.token_hex(3)}"[:64]


class Worker:
    """Runs one provider's duties until `stop` is set (or, with once, until nothing is due)."""

    def __init__(self, provider: str, settings: Settings, clock: Callable[[], datetime], stop: threading.Event,
                 sleep: Callable[[float], object] | None = None, rng: random.Random | None = None):
        self.provider = provider
        self.ctx = Context(settings, clock, stop, worker_id(provider), rng or random.Random())
        self.duties = duties_for(provider, self.ctx)
        self.sleep = sleep or stop.wait
        self.failures = 0

    def run(self, once: bool = False) -> None:
        logger.info("worker %s started", self.provider, extra={"worker": self.ctx.owner, "once": once})
        while not self.ctx.stop.is_set():
            done = self.run_pass()
            if done:
                continue
            if once:
                break
            self.sleep(self.ctx.settings.worker_poll_seconds)
        logger.info("worker %s stopped", self.provider, extra={"worker": self.ctx.owner})

    def run_pass(self) -> int:
        """Give each duty one turn; the number of outbox messages handled."""
        done = 0
        for duty in self.duties:
            if self.ctx.stop.is_set():
                break
            try:
                done += duty.run(self.ctx)
            except Exception:  # a database outage or a bug: log it, idle, and try again
                self.failures += 1
                logger.exception("worker duty %s failed", duty.name, extra={"worker": self.ctx.owner})
        return done


def run_workers(workers: list[Worker], once: bool) -> None:
    """Run one worker here, or several side by side in threads (`--provider all`), each with its own app context."""
    if len(workers) == 1:
        workers[0].run(once)
        return
    app = current_app._get_current_object()

    def target(worker: Worker) -> None:
        with app.app_context():
            worker.run(once)

    threads = [threading.Thread(target=target, args=(w,), name=f"worker-{w.provider}") for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set `stop` (the delivery in hand finishes first); previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, _frame):
        logger.info("worker received %s; stopping after the current delivery", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
