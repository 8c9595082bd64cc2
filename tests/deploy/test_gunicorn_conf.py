"""gunicorn.conf.py, loaded and validated the way gunicorn loads it."""

import datetime
import json
import logging
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from gunicorn.config import Config
from prometheus_client.multiprocess import MultiProcessCollector

from tests.support.live import BIN, free_port

ENV_KNOBS = (
    "GUNICORN_BIND", "GUNICORN_WORKERS", "GUNICORN_THREADS", "GUNICORN_TIMEOUT",
    "GUNICORN_ACCESS_LOG", "GUNICORN_CONTROL_SOCKET", "RUNTIME_DIRECTORY",
    "PROMETHEUS_MULTIPROC_DIR", "LOG_LEVEL",
)


@pytest.fixture
def load(repo_root, monkeypatch):
    """Load gunicorn.conf.py under the given environment into a Config.

    Every setting goes through gunicorn's own validators, as `-c` does.
    """

    def _load(**env):
        for name in ENV_KNOBS:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        namespace = runpy.run_path(str(repo_root / "gunicorn.conf.py"))
        cfg = Config()
        for name, value in namespace.items():
            if name in cfg.settings:
                cfg.set(name, value)
        return cfg, namespace

    return _load


def test_defaults_suit_a_loopback_service_behind_nginx(load):
    cfg, _ = load()
    assert cfg.bind == ["127.0.0.1:8080"]
    assert cfg.worker_class_str == "sync"
    assert 1 <= cfg.workers <= 8
    assert cfg.forwarded_allow_ips == ["127.0.0.1"]
    assert cfg.preload_app is False
    assert cfg.timeout == 30
    assert cfg.graceful_timeout == 20
    assert cfg.max_requests > 0 and cfg.max_requests_jitter > 0
    assert cfg.accesslog is None  # the app logs each request itself
    assert cfg.errorlog == "-"
    assert cfg.control_socket_disable is True  # no socket in $HOME


@pytest.mark.parametrize(("cores", "workers"), [(1, 3), (2, 3), (3, 4), (4, 5), (7, 8), (16, 8)])
def test_default_workers_are_one_per_core_and_one_more(load, monkeypatch, cores, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    cfg, _ = load()
    assert cfg.workers == workers


def test_environment_knobs(load):
    cfg, _ = load(
        GUNICORN_BIND="0.0.0.0:9000", GUNICORN_WORKERS="3", GUNICORN_THREADS="4",
        GUNICORN_TIMEOUT="45", GUNICORN_ACCESS_LOG="1", LOG_LEVEL="DEBUG",
    )
    assert cfg.bind == ["0.0.0.0:9000"]
    assert cfg.workers == 3
    assert cfg.threads == 4
    assert cfg.worker_class_str == "gthread"
    assert cfg.timeout == 45
    assert cfg.accesslog == "-"
    assert cfg.loglevel == "debug"


@pytest.mark.parametrize("value", ["zero", "0", "-2"])
def test_bad_worker_count_stops_with_the_variable_named(load, value):
    with pytest.raises(SystemExit, match="GUNICORN_WORKERS"):
        load(GUNICORN_WORKERS=value)


def test_control_socket_goes_to_the_systemd_runtime_directory(load, tmp_path):
    cfg, _ = load(RUNTIME_DIRECTORY=f"{tmp_path}:{tmp_path}/prometheus")
    assert cfg.control_socket == str(tmp_path / "gunicorn.ctl")
    assert cfg.control_socket_disable is False


@pytest.fixture
def json_logger(load, tmp_path):
    """Build the config's JsonLogger with its handlers writing to files.

    gunicorn's loggers are process-wide, so the handlers are removed again
    afterwards.
    """
    streams = []

    def build(**env):
        cfg, namespace = load(**env)
        logger = namespace["JsonLogger"](cfg)
        for name, log in (("access", logger.access_log), ("error", logger.error_log)):
            stream = open(tmp_path / f"{name}.log", "w", encoding="utf-8")
            streams.append(stream)
            for handler in log.handlers:
                # (pytest adds its own capture handlers to these loggers)
                if getattr(handler, "_gunicorn", False):
                    handler.setStream(stream)
        return logger

    yield build
    for log in (logging.getLogger("gunicorn.access"), logging.getLogger("gunicorn.error")):
        for handler in list(log.handlers):
            if getattr(handler, "_gunicorn", False):
                log.removeHandler(handler)
    for stream in streams:
        stream.close()


def flush(log):
    for handler in log.handlers:
        handler.flush()


def read_lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_access_log_lines_are_valid_json_whatever_the_request(json_logger, tmp_path):
    logger = json_logger(GUNICORN_ACCESS_LOG="1")
    resp = SimpleNamespace(status="201 CREATED", headers=[], sent=17)
    req = SimpleNamespace(headers=[("X-REQUEST-ID", 'id"with\\quotes\n')])
    environ = {
        "REQUEST_METHOD": "POST", "RAW_URI": '/api/"x"', "PATH_INFO": '/api/"x"\\',
        "QUERY_STRING": "a=\x01", "SERVER_PROTOCOL": "HTTP/1.0",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": 'ua\t"',
    }
    logger.access(resp, req, environ, datetime.timedelta(milliseconds=12))
    flush(logger.access_log)
    lines = read_lines(tmp_path / "access.log")
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["status"] == 201
    assert entry["path"] == '/api/"x"\\'
    assert entry["request_id"] == 'id"with\\quotes\n'
    assert entry["duration_ms"] == 12


def test_access_log_is_off_by_default(json_logger, tmp_path):
    logger = json_logger()
    resp = SimpleNamespace(status="200 OK", headers=[], sent=2)
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.0"}
    logger.access(resp, SimpleNamespace(headers=[]), environ, datetime.timedelta(0))
    assert read_lines(tmp_path / "access.log") == []


def test_error_log_lines_are_json(json_logger, tmp_path):
    logger = json_logger()
    logger.error("worker %s timed out", 42)
    flush(logger.error_log)
    entry = json.loads(read_lines(tmp_path / "error.log")[0])
    assert entry["level"] == "ERROR"
    assert entry["message"] == "worker 42 timed out"
    assert entry["logger"] == "gunicorn.error"


# A process recording metrics the way the app and the workers do (multi-process
# mode chosen at import); with "stay" it keeps running until its stdin closes.
RECORD = """
import sys
from prometheus_client import Counter, Gauge, Histogram
Counter("jobs", "Jobs done.", ["outcome"]).labels("ok").inc(int(sys.argv[1]))
took = Histogram("took_seconds", "Time taken.", buckets=(1, 5))
took.observe(0.5)
took.observe(3)
Gauge("busy", "Busy processes.", multiprocess_mode="livesum").set(1)
if sys.argv[2] == "stay":
    print("recorded", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def recorder(tmp_path):
    """Start processes that record metrics into tmp_path/prometheus; the ones that stay are ended afterwards."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    staying = []

    def record(jobs, stay=False):
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
        process = subprocess.Popen([sys.executable, "-c", RECORD, str(jobs), "stay" if stay else "exit"],
                                   env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if stay:
            staying.append(process)
            assert process.stdout.readline() == "recorded\n"
        else:
            process.communicate(timeout=30)
            assert process.returncode == 0
        return process.pid

    record.directory = directory
    yield record
    for process in staying:
        process.communicate(timeout=30)


def collected(directory):
    """What a scrape of the directory reports, as {(sample, labels): value}."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for metric in MultiProcessCollector(None, path=str(directory)).collect()
            for sample in metric.samples}


def files(directory):
    return sorted(path.name for path in directory.iterdir())


JOBS = ("jobs_total", (("outcome", "ok"),))
FAST = ("took_seconds_bucket", (("le", "1.0"),))
SLOW = ("took_seconds_bucket", (("le", "5.0"),))
COUNT = ("took_seconds_count", ())


def test_start_keeps_live_processes_files_and_folds_dead_ones_without_losing_counts(load, recorder):
    _, namespace = load(PROMETHEUS_MULTIPROC_DIR=str(recorder.directory))
    live = recorder(1, stay=True)
    dead = [recorder(2), recorder(4)]
    before = collected(recorder.directory)
    assert before[JOBS] == 7 and before[COUNT] == 6

    namespace["on_starting"](None)

    assert files(recorder.directory) == sorted([
        "counter_merged.db", "histogram_merged.db",
        f"counter_{live}.db", f"histogram_{live}.db", f"gauge_livesum_{live}.db"])
    after = collected(recorder.directory)
    assert {key: after[key] for key in (JOBS, FAST, SLOW, COUNT)} == {JOBS: 7, FAST: 3, SLOW: 6, COUNT: 6}
    # The live gauge counts only the process still running.
    assert after[("busy", ())] == 1
    assert all(str(pid) not in name for pid in dead for name in files(recorder.directory))


def test_a_later_start_adds_to_the_merged_files(load, recorder):
    _, namespace = load(PROMETHEUS_MULTIPROC_DIR=str(recorder.directory))
    recorder(2)
    namespace["on_starting"](None)
    recorder(5)
    namespace["on_starting"](None)
    assert files(recorder.directory) == ["counter_merged.db", "histogram_merged.db"]
    after = collected(recorder.directory)
    assert {key: after[key] for key in (JOBS, FAST, SLOW, COUNT)} == {JOBS: 7, FAST: 2, SLOW: 4, COUNT: 4}
    assert ("busy", ()) not in after


def test_unreadable_file_of_a_dead_process_is_dropped_not_fatal(load, recorder, caplog):
    _, namespace = load(PROMETHEUS_MULTIPROC_DIR=str(recorder.directory))
    live = recorder(1, stay=True)
    dead = recorder(2)
    # A process killed between creating its file and sizing it leaves it empty.
    (recorder.directory / f"counter_{dead}.db").write_bytes(b"")

    namespace["on_starting"](SimpleNamespace(log=logging.getLogger("gunicorn.error")))

    assert "cannot fold the counter files" in caplog.text
    assert files(recorder.directory) == sorted([
        "histogram_merged.db", f"counter_{live}.db", f"histogram_{live}.db", f"gauge_livesum_{live}.db"])
    after = collected(recorder.directory)
    assert after[JOBS] == 1 and after[COUNT] == 4


def test_start_creates_a_missing_directory(load, tmp_path):
    metrics_dir = tmp_path / "run" / "prometheus"
    _, namespace = load(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    namespace["on_starting"](None)
    assert metrics_dir.is_dir() and list(metrics_dir.iterdir()) == []


def test_exited_gunicorn_worker_loses_only_its_live_gauges(load, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "gauge_livesum_4242.db").write_bytes(b"")
    (metrics_dir / "counter_4242.db").write_bytes(b"")
    _, namespace = load(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    namespace["child_exit"](None, SimpleNamespace(pid=4242))
    assert files(metrics_dir) == ["counter_4242.db"]


def test_child_exit_is_a_no_op_without_multiprocess_metrics(load):
    _, namespace = load()
    namespace["child_exit"](None, SimpleNamespace(pid=4242))  # must not raise


GATEWAY_MODULES = ("services", "blueprints", "commands", "webhook_app", "webhook_config", "wsgi")


def test_the_master_imports_the_libraries_but_none_of_the_gateway(repo_root):
    """What on_starting leaves in a fresh interpreter: every preloaded library, and no module of the gateway,
    whose code `kill -HUP` must still reload."""
    probe = ("import json, runpy, sys\n"
             f"namespace = runpy.run_path({str(repo_root / 'gunicorn.conf.py')!r})\n"
             "before = set(sys.modules)\n"
             "namespace['on_starting'](None)\n"
             "print(json.dumps({'named': namespace['PRELOADED_LIBRARIES'], 'before': sorted(before),\n"
             "                  'after': sorted(sys.modules)}))\n")
    env = {key: value for key, value in os.environ.items() if key not in ENV_KNOBS}
    done = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, env=env, capture_output=True, text=True,
                          check=True, timeout=60)
    seen = json.loads(done.stdout)
    assert "sqlalchemy.orm" not in seen["before"] and "flask" not in seen["before"]
    assert set(seen["named"]) <= set(seen["after"])
    assert not [name for name in seen["after"] if name.split(".")[0] in GATEWAY_MODULES]


def _answer(url):
    try:
        return requests.get(url, timeout=5).text
    except requests.RequestException:
        return None


def test_hup_still_brings_up_workers_with_the_new_code(repo_root, tmp_path):
    """The libraries live in the master, the application does not: a reload serves the changed code."""
    app = tmp_path / "reloaded_app.py"
    source = ("def app(environ, start_response):\n"
              "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
              "    return [b'{}']\n")
    app.write_text(source.format("first"))
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ENV_KNOBS}
    master = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", str(repo_root / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--chdir", str(tmp_path), "reloaded_app:app"],
        env={**env, "PYTHONDONTWRITEBYTECODE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while _answer(url) != "first":
            assert time.monotonic() < deadline and master.poll() is None, "gunicorn did not start"
            time.sleep(0.1)
        assert "psycopg" in Path(f"/proc/{master.pid}/maps").read_text()  # the driver is loaded in the master

        app.write_text(source.format("second"))
        master.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while _answer(url) != "second":
            assert time.monotonic() < deadline and master.poll() is None, "the reload did not serve the new code"
            time.sleep(0.1)
    finally:
        master.terminate()
        master.wait(timeout=30)
