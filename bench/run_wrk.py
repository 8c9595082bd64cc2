"""HTTP benchmark of the gateway with wrk, as ratios against a bare Flask app under the same gunicorn settings.

    .venv/bin/python bench/run_wrk.py                      # SQLite, 3 rounds of 10 s per endpoint
    .venv/bin/python bench/run_wrk.py --big                # then again with 1,000,000 stored events
    .venv/bin/python bench/run_wrk.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_http

Starts two gunicorns on free loopback ports, both with gunicorn.conf.py and the same worker count:
bench/bare_app.py (the baseline) and wsgi:app on a freshly migrated database.  Each round runs wrk
against: the bare endpoint, the bare app's one-SELECT and one-INSERT endpoints on the same database
(the floors for a lookup and for a durable write), GET /api/status/{orderId}, POST /api/payment
(a new orderId per request), and POST /webhook/sbp/tbank with validly signed CONFIRMED notifications
(all new, then 50 % duplicates).
Endpoints are interleaved within a round, so background load hits them alike; each figure is the
median over rounds, and the ratio is the median of the per-round ratios to that round's bare run.

Needs wrk on PATH (Debian: apt-get install wrk); uses only the standard library and requests.
Everything listens on 127.0.0.1 and is stopped on exit, errors and Ctrl-C included.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
from wrk_report import growth_table, report_progress, summarize, table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
RESULTS = BENCH / "results"
MAX_DURATION = 15
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
API_TOKEN = "bench-api-token-" + "0123456789abcdef" * 2
STATUS_ORDER = "bench-status-order"
ENDPOINTS = ("bare", "bare_read", "bare_write", "status", "payment", "ingest", "ingest_dup")


class BenchError(RuntimeError):
    """A run that cannot give a valid figure (server failed, wrong answers, wrk missing)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One gunicorn (gunicorn.conf.py) on a free loopback port, in its own process group."""

    def __init__(self, name: str, app: str, env: dict[str, str], workdir: Path, extra_args: list[str]):
        self.name, self.app, self.extra_args = name, app, extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        # Each server wipes its Prometheus directory at start, so they must not share one.
        self.env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"prometheus-{name}")}
        self.process: subprocess.Popen | None = None

    def start(self, ready_path: str) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}",
                 *self.extra_args, self.app],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log_tail = self.log_path.read_text(errors="replace")[-3000:]
                raise BenchError(f"{self.name}: gunicorn exited with {self.process.returncode}:\n{log_tail}")
            try:
                if requests.get(self.url + ready_path, timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise BenchError(f"{self.name}: gunicorn did not answer {ready_path} within 60 s")

    def workers(self) -> list[int]:
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in children.split()]

    def rss_mib(self) -> list[float]:
        """VmRSS of every worker now, in MiB."""
        sizes = []
        for pid in self.workers():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue  # recycled (max_requests) between listing and reading
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        return sizes

    def cpu_seconds(self) -> float:
        """CPU used so far by the workers alive now plus every worker already reaped (the master's cutime)."""
        total = 0.0
        for pid, fields in ((self.process.pid, 4), *((pid, 2) for pid in self.workers())):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            # utime stime cutime cstime are fields 14-17; the command name before them may hold spaces.
            values = stat.rsplit(")", 1)[1].split()[11:11 + fields]
            total += sum(int(value) for value in values) / CLOCK_TICKS
        return total

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class Bench:
    """The servers, the database and the wrk runs of one invocation."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args, self.workdir = args, workdir
        self.database_url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
        self.env = bench_environment(self.database_url)
        self.bare = Server("bare", "bench.bare_app:app", self.env, workdir, args.gunicorn_arg)
        self.app = Server("app", args.app, self.env, workdir, args.gunicorn_arg)
        self.batches = 0

    def python(self, *argv: str, timeout: float = 1800) -> str:
        done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(argv[:3])} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def prepare_database(self) -> None:
        if self.database_url.startswith("postgresql"):
            self.python("bench/seed_events.py", "reset")
        self.python("-m", "flask", "--app", "wsgi", "db", "upgrade")
        self.python("-c", "from bench.bare_app import create_table; create_table()")

    def start(self) -> None:
        self.bare.start("/bare")
        self.app.start("/health")
        created = requests.post(self.app.url + "/api/payment", timeout=10, headers=auth(), json={
            "amount": 100, "orderId": STATUS_ORDER, "telegramId": 700000001, "credit": 100})
        if created.status_code not in (200, 201):
            raise BenchError(f"creating the status order answered {created.status_code}: {created.text[:300]}")

    def wrk(self, server: Server, path: str, script: str, script_args: list[str], duration: float) -> dict:
        """One wrk run; the summary from lua/report.lua plus req/s and the workers' RSS right after."""
        combined = self.workdir / f"{script}.lua"
        combined.write_text((BENCH / "lua" / f"{script}.lua").read_text() + (BENCH / "lua" / "report.lua").read_text())
        command = ["wrk", f"-t{self.args.threads}", f"-c{self.args.connections}", f"-d{duration:g}s",
                   "--timeout", "10s", "-s", str(combined), server.url + path, "--", *script_args]
        cpu_before = server.cpu_seconds()
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
        cpu = server.cpu_seconds() - cpu_before
        lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")]
        if done.returncode != 0 or not lines:
            raise BenchError(f"wrk failed ({done.returncode}): {done.stdout[-1000:]} {done.stderr[-1000:]}")
        result = json.loads(lines[-1].removeprefix("BENCH_JSON "))
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
        result["cpu_ms_per_request"] = cpu * 1000 / max(result["requests"], 1)
        result["errors"] = sum(result[key] for key in
                               ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
        rss = server.rss_mib()
        result["workers"] = len(rss)
        result["rss_mib_mean"] = round(statistics.mean(rss), 1) if rss else None
        result["rss_mib_max"] = round(max(rss), 1) if rss else None
        return result

    def warm_up(self) -> None:
        """Every worker imported and connected before the first measured second."""
        self.wrk(self.bare, "/bare", "get", [], 2)
        self.wrk(self.app, f"/api/status/{STATUS_ORDER}", "get", [API_TOKEN], 2)

    def ingest(self, label: str, mode: str) -> dict:
        """Fresh pending orders and their signed notifications, one wrk run, then what the database says."""
        self.batches += 1
        prefix, bodies = f"{label}-{mode}", self.workdir / f"bodies-{label}-{mode}.txt"
        count = self.args.ingest_orders
        self.python("bench/seed_events.py", "orders", "--prefix", prefix, "--count", str(count),
                    "--first-payment-id", str(self.batches * 10_000_000), "--out", str(bodies))
        result = self.wrk(self.app, "/webhook/sbp/tbank", "ingest", [str(bodies), str(self.args.threads), mode],
                          self.args.duration)
        bodies.unlink()
        outcome = json.loads(self.python("bench/seed_events.py", "check", "--prefix", prefix).splitlines()[-1])
        paid = outcome["orders"].get("paid", 0)
        processed = outcome["events"].get("processed", 0)
        result["fulfilled"] = paid
        result["exactly_once"] = paid == processed == outcome["ledger_entries"] and set(outcome["events"]) <= {"processed"}
        result["bodies_exhausted"] = paid >= count
        result["database_rows"] = outcome["totals"]
        return result

    def one_round(self, label: str) -> dict[str, dict]:
        duration, wanted = self.args.duration, self.args.only or ENDPOINTS
        runs: dict[str, dict] = {"bare": self.wrk(self.bare, "/bare", "get", [], duration)}
        if "bare_read" in wanted:
            runs["bare_read"] = self.wrk(self.bare, "/bare/read", "get", [], duration)
        if "bare_write" in wanted:
            runs["bare_write"] = self.wrk(self.bare, "/bare/write", "post", [], duration)
        if "status" in wanted:
            runs["status"] = self.wrk(self.app, f"/api/status/{STATUS_ORDER}", "get", [API_TOKEN], duration)
        if "payment" in wanted:
            runs["payment"] = self.wrk(self.app, "/api/payment", "payment", [API_TOKEN, label], duration)
        if "ingest" in wanted:
            runs["ingest"] = self.ingest(label, "unique")
        if "ingest_dup" in wanted:
            runs["ingest_dup"] = self.ingest(label, "dup")
        for name, run in runs.items():
            run["ratio"] = run["rps"] / runs["bare"]["rps"]
            run["cpu_ratio"] = runs["bare"]["cpu_ms_per_request"] / run["cpu_ms_per_request"]
            report_progress(label, name, run)
        return runs

    def stop(self) -> None:
        for server in (self.app, self.bare):
            server.stop()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


def bench_environment(database_url: str) -> dict[str, str]:
    """Production mode with every feature that ingest touches switched on; every URL points at loopback."""
    # GUNICORN_* knobs of the caller's environment reach both servers alike.
    env = dict(os.environ)
    env.update({
        "APP_ENV": "production", "LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url, "SECRET_KEY": secrets.token_urlsafe(48),
        "WEBHOOK_API_TOKEN": API_TOKEN, "ADMIN_API_KEY": secrets.token_urlsafe(32),
        "SERVER_URL": "http://127.0.0.1:8080", "SBP_GATEWAY": "sandbox",
        "TBANK_TERMINAL_KEY": "BenchTerminal", "TBANK_PASSWORD": "bench-tbank-password",
        "TBANK_API_URL": "http://127.0.0.1:9/v2/", "CRYPTOBOT_API_URL": "http://127.0.0.1:9/api/",
        "TELEGRAM_BOT_TOKEN": "123456:bench-telegram-token", "TELEGRAM_API_URL": "http://127.0.0.1:9",
        "MERCHANT_WEBHOOK_URL": "http://127.0.0.1:9/merchant",
        "MERCHANT_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    })
    return env


def result_path(today: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path, number = RESULTS / f"{today}.json", 1
    while path.exists():
        number += 1
        path = RESULTS / f"{today}-{number}.json"
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help=f"seconds per wrk run (at most {MAX_DURATION})")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all endpoints; medians are reported")
    parser.add_argument("--only", nargs="+", choices=ENDPOINTS[1:], help="endpoints besides bare (default: all)")
    parser.add_argument("--ingest-orders", type=int, default=20000,
                        help="orders (and notifications) prepared per ingest run; must exceed what one run sends")
    parser.add_argument("--database-url", help="PostgreSQL URL of a database named bench* (it is emptied!)")
    parser.add_argument("--big", action="store_true", help="then store --big-events events and run again")
    parser.add_argument("--big-events", type=int, default=1_000_000)
    parser.add_argument("--gunicorn-arg", action="append", default=[],
                        help="extra gunicorn option for both servers, e.g. --gunicorn-arg=--max-requests=0")
    parser.add_argument("--app", default="wsgi:app",
                        help="WSGI app to measure (module importable from the repository root or PYTHONPATH)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite database)")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= MAX_DURATION:
        parser.error(f"--duration must be between 1 and {MAX_DURATION} seconds")
    if args.database_url and not (urlsplit(args.database_url).path.lstrip("/").startswith("bench")
                                  and args.database_url.startswith("postgresql")):
        parser.error("--database-url must be a PostgreSQL database whose name starts with bench (it is emptied)")
    return args


def run(args: argparse.Namespace, workdir: Path) -> dict:
    bench = Bench(args, workdir)
    database = "PostgreSQL" if args.database_url else "SQLite"
    try:
        bench.prepare_database()
        bench.start()
        bench.warm_up()
        rounds = [bench.one_round(f"r{number}") for number in range(1, args.rounds + 1)]
        sections, raw = {database: summarize(rounds)}, {database: rounds}
        if args.big:
            started = time.monotonic()
            bench.python("bench/seed_events.py", "events", "--count", str(args.big_events), timeout=3600)
            seeded = time.monotonic() - started
            sys.stderr.write(f"stored {args.big_events} events in {seeded:.0f} s\n")
            big = f"{database}, {args.big_events:,} events"
            rounds = [bench.one_round(f"b{number}") for number in range(1, args.rounds + 1)]
            sections[big], raw[big] = summarize(rounds), rounds
    finally:
        bench.stop()
    return {"sections": sections, "rounds": raw, "big_seed_seconds": round(seeded, 1) if args.big else None}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.stderr.write("wrk is not installed: apt-get install wrk (or make bench, which installs it)\n")
        return 2
    # SIGTERM (e.g. from make or a CI timeout) unwinds like Ctrl-C, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    try:
        outcome = run(args, workdir)
    except BenchError as error:
        sys.stderr.write(f"benchmark failed: {error}\n")
        return 1
    finally:
        if args.keep:
            sys.stderr.write(f"work directory kept: {workdir}\n")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    today = datetime.date.today().isoformat()
    rendered = table(outcome["sections"])
    if len(outcome["sections"]) > 1:
        rendered += "\n\n" + growth_table(outcome["sections"])
    path = result_path(today)
    path.write_text(json.dumps({
        "date": today, "machine": {"cpus": os.cpu_count(), "memory_gib": memory_gib()},
        "settings": {key: getattr(args, key) for key in ("duration", "threads", "connections", "rounds",
                                                           "ingest_orders", "big", "big_events", "gunicorn_arg", "app")},
        "database": "postgresql" if args.database_url else "sqlite", **outcome, "table": rendered,
    }, indent=2, default=str) + "\n")
    sys.stdout.write(f"{rendered}\n\nworkers per server: {workers_note(outcome)}\n"
                     f"results: {path.relative_to(ROOT)}\n")
    failed = any(not row["exactly_once"] or row["errors"] for summary in outcome["sections"].values()
                 for row in summary.values())
    return 1 if failed else 0


def workers_note(outcome: dict) -> int:
    return max(row["workers"] for summary in outcome["sections"].values() for row in summary.values())


def memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
