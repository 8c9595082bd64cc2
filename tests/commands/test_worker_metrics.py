"""The worker processes' counters on the app's /metrics: a shared multi-process directory, across restarts."""

from __future__ import annotations

import signal
import time

from prometheus_client.mmap_dict import MmapedDict, mmap_key

from tests.helpers import scrape
from tests.support.live import LiveServer
from tests.support.worker import PROCESS_TIMEOUT, paid_order, wait_for_exit, wired_env, worker_process

DELIVERED = ("delivery_attempts_total", (("channel", "merchant"), ("outcome", "delivered")))


def metrics_env(base_env, merchant, directory) -> dict[str, str]:
    return {**base_env, **wired_env(merchant), "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "WORKER_POLL_SECONDS": "0.1"}


def test_worker_process_deliveries_are_counted_on_the_apps_metrics(make_app, base_env, merchant, tmp_path,
                                                                   monkeypatch):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    app = make_app(**wired_env(merchant))
    paid_order(app.test_client())
    worker = worker_process(metrics_env(base_env, merchant, directory), "merchant", once=True,
                            log_path=tmp_path / "worker.log")
    assert wait_for_exit(worker) == 0, (tmp_path / "worker.log").read_text()
    assert len(merchant.accepted()) == 1
    assert (directory / f"counter_{worker.pid}.db").exists()
    # The scrape path a gunicorn worker takes when the variable is set.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    assert scrape(app.test_client())[DELIVERED] == 1


def delivered_by_then(directory, monkeypatch, app, count: int) -> None:
    """Wait until the worker has counted `count` deliveries (it counts just after recording each one)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while scrape(app.test_client()).get(DELIVERED, 0) < count:
        assert time.monotonic() < deadline, "the worker never counted its delivery"
        time.sleep(0.05)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")


def live_gauge(directory, pid: int):
    """A live-mode gauge file of `pid`, as prometheus_client writes one for Gauge(multiprocess_mode="livesum")."""
    path = directory / f"gauge_livesum_{pid}.db"
    values = MmapedDict(str(path))
    values.write_value(mmap_key("worker_busy", "worker_busy", [], [], "Busy workers."), 1.0, 0.0)
    values.close()
    return path


def test_worker_counters_survive_restarts_of_gunicorn_and_of_the_worker(make_app, base_env, merchant, tmp_path,
                                                                         monkeypatch):
    directory = tmp_path / "prometheus"
    directory.mkdir()  # systemd's RuntimeDirectory=, before either unit runs
    env = metrics_env(base_env, merchant, directory)
    app = make_app(**wired_env(merchant))
    client = app.test_client()
    worker = worker_process(env, "merchant", log_path=tmp_path / "worker.log")
    try:
        paid_order(client, "order-1")
        delivered_by_then(directory, monkeypatch, app, 1)
        gauge = live_gauge(directory, worker.pid)
        # gunicorn starts while the worker runs: the worker's files stay and are counted.
        with LiveServer(env, workers=1, log_path=tmp_path / "gunicorn-1.log") as live:
            assert scrape(live.url)[DELIVERED] == 1
            assert (directory / f"counter_{worker.pid}.db").exists() and gauge.exists()
            worker.send_signal(signal.SIGTERM)
            assert wait_for_exit(worker) == 0, (tmp_path / "worker.log").read_text()
            # Stopped: its live gauge goes with it, its counters stay.
            assert not gauge.exists()
            assert scrape(live.url)[DELIVERED] == 1
    finally:
        worker.kill()
        worker.wait()

    paid_order(client, "order-2")
    again = worker_process(env, "merchant", once=True, log_path=tmp_path / "worker.log")
    assert wait_for_exit(again) == 0, (tmp_path / "worker.log").read_text()
    # A new gunicorn folds the files of both finished workers (and of its predecessor) without losing a count.
    with LiveServer(env, workers=1, log_path=tmp_path / "gunicorn-2.log") as live:
        assert scrape(live.url)[DELIVERED] == 2
    names = {path.name for path in directory.iterdir()}
    assert "counter_merged.db" in names
    assert not {f"counter_{worker.pid}.db", f"counter_{again.pid}.db"} & names
    assert len(merchant.accepted()) == 2
