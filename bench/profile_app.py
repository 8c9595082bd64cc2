"""Where a request's time goes: status, new and repeated CryptoBot webhooks under cProfile, in-process.

    .venv/bin/python bench/profile_app.py                    # every endpoint, 500 requests each
    .venv/bin/python bench/profile_app.py --endpoint new --requests 2000 --sort tottime
    .venv/bin/python bench/profile_app.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_profile

The app is built exactly as gunicorn builds it (production settings from run_wrk.bench_environment,
JSON logging at INFO into /dev/null, Prometheus multi-process mode) on a freshly migrated database.
WSGI environs are prepared before the clock starts, so only the app's own work is timed: first a plain
timed loop (wall and CPU µs per request, compared with the bare app), then a profiled loop whose top
entries are printed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from werkzeug.test import EnvironBuilder

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for path in (str(ROOT), str(BENCH)):
    if path not in sys.path:
        sys.path.insert(0, path)

from run_wrk import API_TOKEN, CRYPTOBOT_TOKEN, STATUS_ORDER, STATUS_ORDER_REQUEST, bench_environment  # noqa: E402


def _start_response(status, headers, exc_info=None):
    return None


def call(app, environ) -> bytes:
    """One WSGI request, body consumed, as gunicorn does."""
    iterable = app(environ, _start_response)
    try:
        return b"".join(iterable)
    finally:
        if hasattr(iterable, "close"):
            iterable.close()


@contextmanager
def writer_lock_held(spans: list[tuple[float, float]]):
    """Collect (held, COMMIT) seconds of every SQLite write transaction: from taking the writer lock before
    BEGIN IMMEDIATE to COMMIT's return, which lets it go. With several workers, writes run one at a time, so
    1 / held bounds a SQLite gateway's webhooks per second, whatever the number of cores."""
    from services.sqlite_writer import SQLiteConnection

    begin, commit = SQLiteConnection.begin, SQLiteConnection.commit
    began: list[float] = []

    def timed_begin(self, *, write: bool) -> None:
        if write:
            began.append(time.perf_counter())
        begin(self, write=write)

    def timed_commit(self) -> None:
        started = time.perf_counter()
        commit(self)
        if began:
            ended = time.perf_counter()
            spans.append((ended - began.pop(), ended - started))

    SQLiteConnection.begin, SQLiteConnection.commit = timed_begin, timed_commit
    try:
        yield
    finally:
        SQLiteConnection.begin, SQLiteConnection.commit = begin, commit


def timed(app, environs: list[dict]) -> tuple[float, float]:
    """Wall and CPU µs per request (CPU leaves out waiting, e.g. for SQLite's fsync)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for environ in environs:
        call(app, environ)
    return ((time.perf_counter() - wall) / len(environs) * 1e6, (time.process_time() - cpu) / len(environs) * 1e6)


# Where a function's own time is counted by --group: the first matching fragment of its file (or C name).
GROUPS = (
    ("database: SQLite COMMIT (fsync)", ("SQLiteConnection.commit", "'commit' of 'sqlite3")),
    ("database: driver statements", ("sqlite3.Cursor", "sqlite3.Connection", "psycopg", "'execute' of", "fetchone")),
    ("SQLAlchemy (session, ORM load, pool)", ("sqlalchemy",)),
    ("gateway: services/", ("/services/",)),
    ("gateway: blueprints/ (hooks, views)", ("/blueprints/",)),
    ("Flask / Werkzeug", ("/flask/", "/werkzeug/")),
    ("logging (stdlib + python-json-logger)", ("/logging/", "pythonjsonlogger")),
    ("Prometheus client", ("prometheus_client",)),
    ("JSON (simplejson, json)", ("simplejson", "/json/")),
    ("marshmallow", ("marshmallow",)),
)


def grouped(stats: pstats.Stats, requests: int) -> str:
    """Own (tottime) µs per request summed by GROUPS, largest first."""
    totals: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        where = f"{filename}:{name}"
        group = next((label for label, fragments in GROUPS if any(part in where for part in fragments)), "other")
        totals[group] = totals.get(group, 0.0) + tottime
    whole = sum(totals.values())
    lines = [f"{'own time by group (cProfile)':<42} {'µs/req':>8} {'share':>6}"]
    for label, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        lines.append(f"{label:<42} {seconds / requests * 1e6:8.0f} {seconds / whole:6.0%}")
    return "\n".join(lines) + "\n"


def profiled(app, environs: list[dict], sort: str, limit: int, group: bool = False, cpu: bool = False) -> str:
    # On PostgreSQL most of a webhook's wall time is waiting for the server, which hides the client's CPU.
    profile = cProfile.Profile(time.process_time) if cpu else cProfile.Profile()
    profile.enable()
    for environ in environs:
        call(app, environ)
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    if group:
        return grouped(stats, len(environs))
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    return out.getvalue()


def status_environs(count: int) -> list[dict]:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    return [EnvironBuilder(path=f"/api/status/{STATUS_ORDER}", headers=headers).get_environ() for _ in range(count)]


def webhook_environs(app, count: int, batch: int, workdir: Path) -> list[dict]:
    """Signed invoice_paid updates for `count` fresh pending CryptoBot orders."""
    import seed_events

    bodies = workdir / f"bodies-{batch}.tsv"
    with app.app_context():
        seed_events.seed_cryptobot(f"profile{batch}", count, batch * 10_000_000, bodies, app.config["SETTINGS"])
    environs = []
    for line in bodies.read_text().splitlines():
        _, signature, body = line.split("\t", 2)
        environs.append(EnvironBuilder(path="/webhook/cryptobot", method="POST", data=body.encode(),
                                       headers={"Crypto-Pay-Api-Signature": signature},
                                       content_type="application/json").get_environ())
    return environs


def repeat_environs(app, count: int, batch: int, workdir: Path) -> list[dict]:
    """Updates already processed: the new ones, sent once (untimed), to be sent again."""
    environs = webhook_environs(app, count, batch, workdir)
    for environ in environs:
        call(app, dict(environ, **{"wsgi.input": io.BytesIO(environ["wsgi.input"].getvalue())}))
    for environ in environs:
        environ["wsgi.input"].seek(0)
    return environs


def build(database_url: str, workdir: Path, crypto_pay_url: str):
    """The bare app and the gateway on a migrated database, both logging like production but to /dev/null."""
    env = bench_environment(database_url, crypto_pay_url)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "prometheus")
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"])
    # prometheus_client reads its switch from the process environment at import time.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = env["PROMETHEUS_MULTIPROC_DIR"]
    from flask_migrate import upgrade

    from bare_app import app as bare
    from services.db import db
    from webhook_app import create_app

    if database_url.startswith("postgresql"):
        import seed_events

        with create_app(env).app_context():
            seed_events.reset(database_url)
            db.engine.dispose()
    app = create_app(env)
    with app.app_context():
        upgrade()
    created = app.test_client().post("/api/payment", headers={"Authorization": f"Bearer {API_TOKEN}"},
                                     json=STATUS_ORDER_REQUEST)
    if created.status_code not in (200, 201):
        raise SystemExit(f"creating the status order answered {created.status_code}: {created.get_data()[:300]}")
    return bare, app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=("status", "new", "repeat", "all"), default="all")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--sort", default="cumulative", help="pstats sort key: cumulative, tottime, ...")
    parser.add_argument("--limit", type=int, default=40, help="profile lines printed per endpoint")
    parser.add_argument("--group", action="store_true", help="print own time per request by package instead")
    parser.add_argument("--cpu", action="store_true", help="profile CPU time (process_time) instead of wall time")
    parser.add_argument("--database-url", help="PostgreSQL database named bench* (emptied); default SQLite in /tmp")
    parser.add_argument("--no-cprofile", action="store_true",
                        help="run the second batch without cProfile, for a sampler outside (py-spy record)")
    args = parser.parse_args(argv)
    if args.database_url and "/bench" not in args.database_url:
        parser.error("--database-url must name a database starting with bench (it is emptied)")

    sys.path.insert(0, str(ROOT))
    from tests.fakes.cryptopay import FakeCryptoPay

    workdir = Path(tempfile.mkdtemp(prefix="gateway-profile-"))
    report, sys.stdout = sys.stdout, open(os.devnull, "w")  # the app's JSON log lines go to stdout
    crypto_pay = FakeCryptoPay(token=CRYPTOBOT_TOKEN).start()
    try:
        bare, app = build(args.database_url or f"sqlite:///{workdir / 'profile.db'}", workdir, crypto_pay.api_url)
        bare_environs = [EnvironBuilder(path="/bare").get_environ() for _ in range(args.requests)]
        timed(bare, bare_environs[:50])
        bare_wall, bare_cpu = timed(bare, bare_environs)
        report.write(f"bare Flask: {bare_wall:.0f} µs per request ({bare_cpu:.0f} µs CPU)\n")
        batch = 0
        for endpoint in ("status", "new", "repeat") if args.endpoint == "all" else (args.endpoint,):
            environs = []
            for _ in range(2):  # one batch timed, a fresh one profiled (new bodies are single-use)
                batch += 1
                environs.append(status_environs(args.requests) if endpoint == "status"
                                else webhook_environs(app, args.requests, batch, workdir) if endpoint == "new"
                                else repeat_environs(app, args.requests, batch, workdir))
            timed(app, status_environs(50))  # warm caches (compiled SQL, schemas)
            spans: list[tuple[float, float]] = []
            with writer_lock_held(spans):
                wall, cpu = timed(app, environs[0])
            report.write(f"\n== {endpoint}: {wall:.0f} µs per request ({cpu:.0f} µs CPU), "
                         f"{bare_wall / wall:.2f} × bare (in-process, no gunicorn/network)\n")
            if spans:
                report.write(f"SQLite writer lock held per write transaction: median "
                             f"{statistics.median(held for held, _ in spans) * 1e6:.0f} µs, of which COMMIT "
                             f"{statistics.median(commit for _, commit in spans) * 1e6:.0f} µs "
                             f"({len(spans)} transactions)\n")
            if args.no_cprofile:
                timed(app, environs[1])
            else:
                report.write(profiled(app, environs[1], args.sort, args.limit, args.group, args.cpu))
    finally:
        crypto_pay.stop()
        sys.stdout.close()
        sys.stdout = report
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
