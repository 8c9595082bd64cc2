"""Gunicorn settings for the payment webhook gateway.

Used as ``gunicorn -c gunicorn.conf.py wsgi:app`` both by ``make run`` and by
``webhook.service``.  Options given on the command line (``--bind``,
``--workers``, ...) override the values here; that is gunicorn's normal order
(defaults < this file < GUNICORN_CMD_ARGS < command line).

Environment knobs (all optional):

    GUNICORN_BIND            listen address           127.0.0.1:8080
    GUNICORN_WORKERS         worker processes         cores + 1, at least 3, at most 8
    GUNICORN_THREADS         threads per worker       1 (sync worker)
    GUNICORN_TIMEOUT         hard per-request limit   30 (seconds)
    GUNICORN_ACCESS_LOG      any non-empty value turns gunicorn's own
                             JSON access log on (stdout)
    GUNICORN_CONTROL_SOCKET  path of the gunicornc control socket
    LOG_LEVEL                gunicorn's error log level   info
    PROMETHEUS_MULTIPROC_DIR prometheus_client multi-process directory,
                             shared with the webhook-worker@ processes;
                             dead processes' files folded at start
"""

import datetime
import glob
import importlib
import json
import logging
import os
import struct
import time

from gunicorn import glogging


def _env_int(name, default, minimum=1):
    """Read a positive integer setting, failing with a line naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"{name} must be >= {minimum}, got {value}")
    return value


def _cpu_count():
    """CPUs this process may run on (honours cpusets / CPUAffinity=)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --- Socket ---------------------------------------------------------------
# Loopback only: the public side is nginx (nginx/webhook.conf).  A --bind on
# the command line replaces this list entirely.
bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")]

# --- Workers --------------------------------------------------------------
# Sync workers: one request per process.
# * nginx buffers whole requests and responses (proxy_request_buffering /
#   proxy_buffering), so slow clients never hold a worker; what is left is a
#   short database transaction per request.
# * Notifications, merchant webhooks and panel calls run in the
#   webhook-worker@ units; only payment creation calls a provider in the
#   request, with a timeout.
# * With sync workers `timeout` is a real per-request deadline: a request
#   stuck longer than that gets its worker killed and replaced.  gthread only
#   detects a stuck *process*, a stuck thread blocks silently.
# * No thread-safety questions for SQLAlchemy sessions or SQLite connections.
# * cores + 1, not gunicorn's 2*cores+1 rule of thumb (meant for workers
#   that mostly wait): these requests are short and use the CPU, so workers
#   beyond the cores only take the CPU from each other, and on SQLite from the
#   one holding the writer lock.  On 2 cores, 3 workers answered SQLite's new
#   webhooks 15-32 % faster than 5, status reads 3-20 % faster on both
#   databases, PostgreSQL's new webhooks -8 to +32 % per round
#   (docs/performance.md, change 16).
# * At least 3, so that two requests waiting on a slow provider still leave
#   one for webhooks; at most 8, since every worker is a database client.
# GUNICORN_THREADS > 1 makes gunicorn switch to the gthread worker by itself.
workers = _env_int("GUNICORN_WORKERS", max(3, min(_cpu_count() + 1, 8)))
threads = _env_int("GUNICORN_THREADS", 1)
worker_class = "sync" if threads == 1 else "gthread"

# Recycle workers now and then so a slow leak (in the app or a C extension)
# never grows without bound.  Workers share the load evenly, so they reach
# their limit together: the jitter (each worker's limit is 10000 plus up to
# 5000) spreads their restarts over a while instead of a few seconds, which
# under load took every worker down at once and held requests for up to 1.5 s
# (docs/performance.md).  Recycling after only 1000 requests spent more CPU
# on boots than on requests under load.
max_requests = 10000
max_requests_jitter = 5000

# Do not import the app in the master.  Each worker builds its own app and
# so its own database engine/connection pool after fork: no SQLite handle or
# PostgreSQL socket is ever shared between processes, and `kill -HUP`
# reloads the code.  The libraries, which are most of a worker's boot, are
# imported in the master all the same (on_starting, below).
preload_app = False

# Imported once in the master and inherited by every worker at fork: a worker
# then boots in about 0.2 s of CPU instead of 0.75 s, which is what a restart
# by max_requests costs the requests in flight.  None of them connects,
# starts a thread or keeps a file open on import.  The gateway's own modules
# stay out, so HUP still starts workers with new code; a library upgrade needs
# a restart (`systemctl restart webhook`, as deploy/install.sh does).
PRELOADED_LIBRARIES = (
    "flask", "flask_sqlalchemy", "flask_migrate", "flask_wtf", "sqlalchemy.orm",
    "sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql.psycopg", "psycopg",
    "marshmallow", "apispec", "requests", "simplejson", "qrcode", "PIL.Image",
    "argon2", "cryptography.hazmat.primitives.asymmetric.ed25519", "jinja2",
    "pythonjsonlogger.json", "standardwebhooks", "dotenv",
)

# --- Timeouts -------------------------------------------------------------
# Webhook handlers do one database transaction and answer in milliseconds;
# providers give up after some seconds and retry.  The slowest legitimate
# request is a payment creation that calls a provider API twice (T-Bank
# Init + GetQr), each call bounded by HTTP_TIMEOUT_SECONDS (10 s).  A request
# still running after 30 s is stuck: kill the worker rather than let it hold
# a slot.  nginx's proxy_read_timeout (35 s) is a little longer, so nginx
# sees the kill and answers 502 JSON instead of giving up first.
timeout = _env_int("GUNICORN_TIMEOUT", 30)
# On SIGTERM / restart, in-flight requests get this long to finish.
# webhook.service's TimeoutStopSec is longer than this.
graceful_timeout = 20
# Only used by gthread (the sync worker closes every connection); nginx talks
# HTTP/1.0 to us without keep-alive anyway.
keepalive = 5

# The heartbeat file every worker touches; on a RAM disk so a slow or
# read-only disk (ProtectSystem=strict) cannot make healthy workers look dead.
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    worker_tmp_dir = "/dev/shm"
# Heartbeat files and sockets that gunicorn creates are private to our user.
umask = 0o077

# --- Proxy trust ----------------------------------------------------------
# Only the local nginx may set X-Forwarded-Proto & co.  (The client address
# itself is taken from X-Forwarded-For by the app's ProxyFix, PROXY_HOPS=1.)
# For a load balancer on another host use --forwarded-allow-ips.
forwarded_allow_ips = "127.0.0.1"
# We use no SCRIPT_NAME/PATH_INFO from the proxy; trust no such header.
forwarder_headers = ""

# --- Control socket -------------------------------------------------------
# gunicorn >= 25 opens a control socket for `gunicornc`, by default under
# $XDG_RUNTIME_DIR or ~/.gunicorn.  The home directory is read-only under
# webhook.service and shared between test runs, so put it in the unit's
# RuntimeDirectory (systemd exports $RUNTIME_DIRECTORY) or switch it off.
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET")
if not _control_socket and os.environ.get("RUNTIME_DIRECTORY"):
    _control_socket = os.path.join(
        os.environ["RUNTIME_DIRECTORY"].split(":")[0], "gunicorn.ctl"
    )
if _control_socket:
    control_socket = _control_socket
else:
    control_socket_disable = True

proc_name = "webhook"


# --- Logging --------------------------------------------------------------
def _iso_time(timestamp=None):
    """UTC, ISO 8601 with milliseconds: 2026-01-31T12:00:00.123Z."""
    moment = datetime.datetime.fromtimestamp(
        time.time() if timestamp is None else timestamp, datetime.timezone.utc
    )
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the field names of the app's own lines."""

    def format(self, record):
        entry = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class JsonLogger(glogging.Logger):
    """gunicorn's logger, writing JSON lines that journald stores as they are.

    gunicorn's own access_log_format only escapes double quotes, so a request
    line with a backslash or control character would break the JSON; the
    access line is therefore built here with json.dumps.
    """

    def setup(self, cfg):
        super().setup(cfg)
        for handler in self.error_log.handlers:
            if getattr(handler, "_gunicorn", False):
                handler.setFormatter(JsonFormatter())

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        entry = {
            "time": _iso_time(),
            "level": "INFO",
            "logger": "gunicorn.access",
            "event": "gunicorn_access",
            "method": atoms["m"],
            "path": atoms["U"],
            "query": atoms["q"] or None,
            "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
            "bytes": atoms["B"],
            "duration_ms": atoms["M"],
            "remote_addr": atoms["h"],
            "request_id": atoms.get("{x-request-id}i"),
            "user_agent": atoms["a"],
            "pid": os.getpid(),
        }
        try:
            self.access_log.info(json.dumps(entry, ensure_ascii=False, default=str))
        except Exception:  # a log line must never fail the request
            self.exception("could not write the access log line")


logger_class = JsonLogger
errorlog = "-"  # stderr: journald
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# The application already logs every request as one JSON line (method, path,
# status, duration_ms, remote_addr after ProxyFix, request_id).  gunicorn's
# access log would duplicate each of those lines with less information (it
# sees nginx's address), so it stays off unless asked for, e.g. to debug
# the app's logging itself.
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG") else None


# --- Prometheus multi-process mode -----------------------------------------
# PROMETHEUS_MULTIPROC_DIR (/run/webhook/prometheus under systemd) is shared
# with every webhook-worker@ process, and it outlives restarts of either unit
# (RuntimeDirectoryPreserve=yes): so gunicorn's start must not wipe it.  Each
# file is one process's, named after its pid (counter_1234.db,
# gauge_livesum_1234.db).  At start the files of processes that are gone are
# folded into one file per type (counter_merged.db, ...), so the directory
# does not grow with every restart and no counter ever goes down:
# Prometheus would read a drop as a reset and count the survivors' total a
# second time.  Files of live processes (the workers) are left alone.
#
# This runs before gunicorn forks a worker, so no scrape reads the directory
# meanwhile, and the webhook-worker@ processes only ever touch their own
# files (which are kept).  A crash between writing a merged file
# and removing its sources would count those sources twice: the window is a
# few unlinks.

# Types whose values add up across processes; gauges (none in this app) keep
# prometheus_client's own rules: live* files are dropped with their process,
# the other modes stay as they are.
_ADDITIVE = ("counter", "histogram", "summary")
_MERGED = "merged"


def _multiproc_dir():
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _pid_of(path):
    """The pid a metrics file belongs to; None for the merged files."""
    tail = os.path.basename(path)[: -len(".db")].rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, just not ours to signal
        return True
    return True


def _fold(server, path, kind, sources):
    """Fold the `sources` files of one metric type; if one cannot be read, drop that type's dead files."""
    merged = os.path.join(path, f"{kind}_{_MERGED}.db")
    try:
        _fold_into_merged(merged, sources)
    except (OSError, ValueError, RuntimeError, struct.error):
        # An unreadable file (say, of a process killed while creating it) fails
        # every scrape, here until reboot, and must not keep gunicorn from
        # starting: this type's counts of dead processes start from zero instead.
        server.log.exception("metrics: cannot fold the %s files of dead processes; removing them", kind)
        for name in [*sources, merged, merged + ".partial"]:
            if os.path.exists(name):
                os.remove(name)


def _fold_into_merged(merged, sources):
    """Add the `sources` files into `merged` (created if need be), then remove them."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector

    inputs = sources + ([merged] if os.path.exists(merged) else [])
    # Written under a name scrapes do not read (*.db), then renamed over the old one.
    partial = merged + ".partial"
    if os.path.exists(partial):
        os.remove(partial)
    out = MmapedDict(partial)
    try:
        # accumulate=False: histogram buckets stay per bucket, as they are in the files.
        for metric in MultiProcessCollector.merge(inputs, accumulate=False):
            for sample in metric.samples:
                key = mmap_key(metric.name, sample.name, list(sample.labels),
                               list(sample.labels.values()), metric.documentation)
                out.write_value(key, sample.value, 0.0)
    finally:
        out.close()
    os.replace(partial, merged)
    for source in sources:
        os.remove(source)


def on_starting(server):
    """Import the libraries the workers will inherit; fold the metric files of dead processes."""
    for name in PRELOADED_LIBRARIES:
        importlib.import_module(name)
    _fold_dead_processes_metrics(server)


def _fold_dead_processes_metrics(server):
    """Fold the metric files of dead processes; keep those of live ones (the workers)."""
    path = _multiproc_dir()
    if not path:
        return
    os.makedirs(path, mode=0o700, exist_ok=True)
    # Imported here: the master never needs prometheus_client otherwise.
    from prometheus_client import multiprocess

    dead = {}
    for name in glob.glob(os.path.join(path, "*.db")):
        pid = _pid_of(name)
        if pid is not None and not _alive(pid):
            dead.setdefault(pid, []).append(name)
    by_kind = {}
    for pid, names in dead.items():
        multiprocess.mark_process_dead(pid, path)
        for name in names:
            kind = os.path.basename(name).split("_", 1)[0]
            if kind in _ADDITIVE:
                by_kind.setdefault(kind, []).append(name)
    for kind, names in sorted(by_kind.items()):
        _fold(server, path, kind, sorted(names))


def child_exit(server, worker):
    """Drop the live-gauge files of a worker that exited."""
    if not _multiproc_dir():
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
