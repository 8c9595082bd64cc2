"""HTTP benchmark of the gateway with wrk, as ratios against database floors measured in the same run.

    .venv/bin/python bench/run_wrk.py                       # SQLite, 3 rounds of 10 s per endpoint
    .venv/bin/python bench/run_wrk.py --database sqlite \
        --database postgresql+psycopg://postgres@127.0.0.1:5432/bench_http --write-doc docs/performance.md
    .venv/bin/python bench/run_wrk.py --big                 # then again with 1,000,000 stored events

Per database, starts two gunicorns on free loopback ports, both with gunicorn.conf.py and the same worker
count: bench/bare_app.py (the floors) and wsgi:app on a freshly migrated database, plus a fake Crypto Pay
API in this process.  Each round runs wrk against: bare Flask, the bare app's one-SELECT and one-INSERT
endpoints on the same database (the read and write floors), POST /webhook/cryptobot with validly signed
invoice_paid updates for pre-created pending orders (new webhooks: one fulfilment each), the same bodies
again (repeated webhooks), GET /api/status/{orderId}, and POST /api/payment for CryptoBot (a new orderId
per request; createInvoice answered by the fake).
Endpoints are interleaved within a round, so background load hits them alike; each figure is the
median over rounds, and each ratio is the median of the per-round ratios to that round's floor.

Needs wrk on PATH (Debian: apt-get install wrk); uses the standard library, requests and the test fakes.
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
from wrk_report import compare_table, growth_table, report_progress, summarize, table, targets_table, write_doc

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
RESULTS = BENCH / "results"
MAX_DURATION = 15
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
API_TOKEN = "bench-api-token-" + "0123456789abcdef" * 2
STATUS_ORDER = "bench-status-order"
STATUS_ORDER_REQUEST = {"amount": "1.5", "currency": "USDT", "provider": "cryptobot", "orderId": STATUS_ORDER,
                        "telegramId": 700000001, "credit": 100}
CRYPTOBOT_TOKEN = "1234:bench-crypto-pay-token-0123456789abcdef"
# What seed_events.py gives each order: its ledger entry's amount.
ORDER_CREDIT = 100
ENDPOINTS = ("bare", "bare_read", "bare_write", "bare_shape", "new", "repeat", "status", "payment")
# The floor each row is measured against (its ratio is req/s ÷ the floor's req/s of the same round).
FLOORS = {"bare": "bare", "bare_read": "bare", "bare_write": "bare", "bare_shape": "bare_write", "new": "bare_write",
          "repeat": "bare_read", "status": "bare_read", "payment": "bare"}


class BenchError(RuntimeError):
    """A run that cannot give a valid figure (server failed, wrong answers, wrk missing)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One gunicorn (gunicorn.conf.py) on a free loopback port, in its own process group."""

    def __init__(self, name: str, app: str, env: dict[str, str], workdir: Path, extra_args: list[str],
                 source: Path = ROOT):
        self.name, self.app, self.extra_args, self.source = name, app, extra_args, source
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        # Each server wipes its Prometheus directory at start, so they must not share one.
        self.env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"prometheus-{name}")}
        self.process: subprocess.Popen | None = None

    def start(self, ready_path: str) -> None:
        # Compiled first, as deploy/install.sh does: the service (and this machine) runs with
        # PYTHONDONTWRITEBYTECODE, so every worker boot would otherwise compile the gateway's sources again.
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-x", r"[/\\]\.(venv|git)[/\\]", str(self.source)],
                       check=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{self.port}",
                 *self.extra_args, self.app],
                cwd=self.source, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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


def postgres_cpu_seconds() -> dict[int, float]:
    """CPU used so far by each PostgreSQL server process alive now: its backends do the statements' work, which
    the gateway's own CPU leaves out (SQLite's runs inside the gateway's workers)."""
    used = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text.partition("(")[2].rpartition(")")
        if name == "postgres":
            used[int(stat.parent.name)] = sum(int(value) for value in rest.split()[11:13]) / CLOCK_TICKS
    return used


def postgres_cpu_since(before: dict[int, float]) -> float:
    """CPU the PostgreSQL processes used since `before`: per process, so that one that exited meanwhile (a
    backend of a closed connection) takes nothing away, and one that started counts whole (also under a reused pid,
    when it has used less than its predecessor had)."""
    return sum(seconds - before.get(pid, 0.0) if seconds >= before.get(pid, 0.0) else seconds
               for pid, seconds in postgres_cpu_seconds().items())


class Bench:
    """The servers, the database and the wrk runs of one database."""

    def __init__(self, args: argparse.Namespace, database_url: str, workdir: Path, crypto_pay_url: str):
        self.args, self.workdir = args, workdir
        self.database_url = database_url
        self.env = bench_environment(self.database_url, crypto_pay_url)
        self.bare = Server("bare", "bench.bare_app:app", self.env, workdir, args.gunicorn_arg)
        self.app = Server("app", args.app, self.env, workdir, args.gunicorn_arg)
        # --compare: the same gateway rows from another source tree (e.g. `git archive` of the code before a
        # change), in the same rounds on the same database, so before and after share their floors.
        self.before = (Server("before", args.app, self.env, workdir, args.gunicorn_arg, source=args.compare)
                       if args.compare else None)
        self.batches = 0

    def python(self, *argv: str, timeout: float = 1800) -> str:
        done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(argv[:3])} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def prepare_database(self) -> None:
        if self.database_url.startswith("postgresql"):
            ensure_postgres_database(self.database_url)
            self.python("bench/seed_events.py", "reset")
        self.python("-m", "flask", "--app", "wsgi", "db", "upgrade")
        self.python("-c", "from bench.bare_app import create_table; create_table()")

    def start(self) -> None:
        self.bare.start("/bare")
        self.app.start("/health")
        if self.before is not None:
            self.before.start("/health")
        created = requests.post(self.app.url + "/api/payment", timeout=10, headers=auth(), json=STATUS_ORDER_REQUEST)
        if created.status_code not in (200, 201):
            raise BenchError(f"creating the status order answered {created.status_code}: {created.text[:300]}")

    def wrk(self, server: Server, path: str, script: str, script_args: list[str], duration: float) -> dict:
        """One wrk run; the summary from lua/report.lua plus req/s, CPU, load and the workers' RSS right after."""
        combined = self.workdir / f"{script}.lua"
        combined.write_text((BENCH / "lua" / f"{script}.lua").read_text() + (BENCH / "lua" / "report.lua").read_text())
        command = ["wrk", f"-t{self.args.threads}", f"-c{self.args.connections}", f"-d{duration:g}s",
                   "--timeout", "10s", "-s", str(combined), server.url + path, "--", *script_args]
        load_before = os.getloadavg()[0]
        on_postgres = self.database_url.startswith("postgresql")
        database_cpu_before = postgres_cpu_seconds() if on_postgres else None
        cpu_before = server.cpu_seconds()
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
        cpu = server.cpu_seconds() - cpu_before
        database_cpu = postgres_cpu_since(database_cpu_before) if on_postgres else None
        lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")]
        if done.returncode != 0 or not lines:
            raise BenchError(f"wrk failed ({done.returncode}): {done.stdout[-1000:]} {done.stderr[-1000:]}")
        result = json.loads(lines[-1].removeprefix("BENCH_JSON "))
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
        result["cpu_ms_per_request"] = cpu * 1000 / max(result["requests"], 1)
        result["database_cpu_ms_per_request"] = (None if database_cpu is None
                                                 else database_cpu * 1000 / max(result["requests"], 1))
        result["errors"] = sum(result[key] for key in
                               ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
        result["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        rss = server.rss_mib()
        result["workers"] = len(rss)
        result["rss_mib_mean"] = round(statistics.mean(rss), 1) if rss else None
        result["rss_mib_max"] = round(max(rss), 1) if rss else None
        return result

    def warm_up(self) -> None:
        """Every worker imported and connected before the first measured second."""
        self.wrk(self.bare, "/bare", "get", [], 2)
        for server in (self.app, self.before) if self.before is not None else (self.app,):
            self.wrk(server, f"/api/status/{STATUS_ORDER}", "get", [API_TOKEN], 2)

    def webhooks(self, label: str, server: Server) -> tuple[dict, dict]:
        """Fresh pending CryptoBot orders and their signed invoice_paid updates: one wrk run sending them
        (new), then one resending the bodies of the orders that run paid (repeated), each checked in the database."""
        self.batches += 1
        prefix, bodies = label, self.workdir / f"bodies-{label}.tsv"
        count = self.args.ingest_orders
        self.python("bench/seed_events.py", "cryptobot", "--prefix", prefix, "--count", str(count),
                    "--first-invoice-id", str(self.batches * 10_000_000), "--out", str(bodies))
        new = self.wrk(server, "/webhook/cryptobot", "cryptobot", [str(bodies), str(self.args.threads)],
                       self.args.duration)
        paid_ids = self.workdir / f"paid-{label}.txt"
        after_new = self.check(prefix, paid_ids)
        new.update(self.exactly_once(after_new, expected_new=None))
        new["bodies_exhausted"] = new["fulfilled"] >= count
        paid = set(paid_ids.read_text().split())
        repeats = self.workdir / f"repeats-{label}.tsv"
        with bodies.open() as source, repeats.open("w") as target:
            target.writelines(line for line in source if line.split("\t", 1)[0] in paid)
        repeat = self.wrk(server, "/webhook/cryptobot", "cryptobot", [str(repeats), str(self.args.threads)],
                          self.args.duration)
        after_repeat = self.check(prefix, None)
        repeat.update(self.exactly_once(after_repeat, expected_new=after_new))
        for path in (bodies, repeats, paid_ids):
            path.unlink()
        return new, repeat

    def check(self, prefix: str, paid_out: Path | None) -> dict:
        argv = ["bench/seed_events.py", "check", "--prefix", prefix]
        if paid_out is not None:
            argv += ["--paid-out", str(paid_out)]
        return json.loads(self.python(*argv).splitlines()[-1])

    @staticmethod
    def exactly_once(outcome: dict, expected_new: dict | None) -> dict:
        """Every paid order has one processed event, one ledger entry (balance = paid × credit) and its two outbox
        rows (merchant event, buyer message); after repeats, nothing more than after the new run."""
        paid = outcome["orders"].get("paid", 0)
        processed = outcome["events"].get("processed", 0)
        held = (paid == processed == outcome["ledger_entries"] and set(outcome["events"]) <= {"processed"}
                and outcome["balance"] == paid * ORDER_CREDIT and outcome["outbox_rows"] == 2 * paid)
        if expected_new is not None:
            held = held and all(outcome[key] == expected_new[key]
                                for key in ("orders", "events", "ledger_entries", "balance", "outbox_rows"))
        return {"fulfilled": paid, "exactly_once": held, "database_rows": outcome["totals"], "checked": outcome}

    def one_round(self, label: str) -> dict[str, dict]:
        duration, wanted = self.args.duration, self.args.only or ENDPOINTS
        runs: dict[str, dict] = {"bare": self.wrk(self.bare, "/bare", "get", [], duration)}
        if "bare_read" in wanted:
            runs["bare_read"] = self.wrk(self.bare, "/bare/read", "get", [], duration)
        if "bare_write" in wanted:
            runs["bare_write"] = self.wrk(self.bare, "/bare/write", "post", [], duration)
        if "bare_shape" in wanted:
            runs["bare_shape"] = self.wrk(self.bare, "/bare/shape", "post", [], duration)
        servers = [("", self.app)] + ([("@before", self.before)] if self.before is not None else [])
        # Before and after alternate, and which goes first alternates by round.
        if self.before is not None and int(label.lstrip("rb") or 1) % 2 == 0:
            servers.reverse()
        for suffix, server in servers:
            if "new" in wanted or "repeat" in wanted:
                # Prefixes that do not match each other in the LIKE of seed_events.py check: r2a, r2b.
                runs["new" + suffix], runs["repeat" + suffix] = self.webhooks(label + ("b" if suffix else "a" if self.before else ""), server)
        for suffix, server in servers:
            if "status" in wanted:
                runs["status" + suffix] = self.wrk(server, f"/api/status/{STATUS_ORDER}", "get", [API_TOKEN], duration)
        if "payment" in wanted:
            runs["payment"] = self.wrk(self.app, "/api/payment", "payment_cryptobot", [API_TOKEN, label], duration)
        for name, run in runs.items():
            wanted_floor = FLOORS[name.split("@")[0]]
            floor = runs.get(wanted_floor, runs["bare"])
            run["floor"] = wanted_floor if wanted_floor in runs else "bare"
            run["ratio"] = run["rps"] / floor["rps"]
            run["ratio_to_bare"] = run["rps"] / runs["bare"]["rps"]
            run["cpu_ratio"] = floor["cpu_ms_per_request"] / run["cpu_ms_per_request"]
            report_progress(label, name, run)
        return runs

    def stop(self) -> None:
        for server in (self.app, self.before, self.bare):
            if server is not None:
                server.stop()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


def bench_environment(database_url: str, crypto_pay_url: str = "http://127.0.0.1:9/api/") -> dict[str, str]:
    """Production mode with every feature that ingest touches switched on; every URL points at loopback."""
    # GUNICORN_* knobs of the caller's environment reach both servers alike.
    env = dict(os.environ)
    env.update({
        "APP_ENV": "production", "LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url, "SECRET_KEY": secrets.token_urlsafe(48),
        "WEBHOOK_API_TOKEN": API_TOKEN, "ADMIN_API_KEY": secrets.token_urlsafe(32),
        "SERVER_URL": "http://127.0.0.1:8080", "SBP_GATEWAY": "tbank",
        "TBANK_TERMINAL_KEY": "BenchTerminal", "TBANK_PASSWORD": "bench-tbank-password",
        "TBANK_API_URL": "http://127.0.0.1:9/v2/", "CRYPTOBOT_API_URL": crypto_pay_url,
        "CRYPTOBOT_TOKEN": CRYPTOBOT_TOKEN,
        "TELEGRAM_BOT_TOKEN": "123456:bench-telegram-token", "TELEGRAM_API_URL": "http://127.0.0.1:9",
        "MERCHANT_WEBHOOK_URL": "http://127.0.0.1:9/merchant",
        "MERCHANT_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    })
    return env


def ensure_postgres_database(url: str) -> None:
    """Create the bench* database when it does not exist yet (connecting to the server's `postgres` database)."""
    import psycopg

    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    name = parts.path.lstrip("/")
    with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            connection.execute(f'CREATE DATABASE "{name}"')


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
                        help="orders (and webhooks) prepared per round; must exceed what one run sends")
    parser.add_argument("--database", action="append", default=[], metavar="sqlite|URL",
                        help="sqlite (a temporary file) or the PostgreSQL URL of a database named bench* (emptied; "
                             "created if missing); repeat for several, each measured in turn (default: sqlite)")
    parser.add_argument("--database-url", help="same as --database URL")
    parser.add_argument("--write-doc", type=Path, help="write the tables into this Markdown file (docs/performance.md)")
    parser.add_argument("--big", action="store_true", help="then store --big-events events and run again")
    parser.add_argument("--big-events", type=int, default=1_000_000)
    parser.add_argument("--gunicorn-arg", action="append", default=[],
                        help="extra gunicorn option for both servers, e.g. --gunicorn-arg=--max-requests=0")
    parser.add_argument("--app", default="wsgi:app",
                        help="WSGI app to measure (module importable from the repository root or PYTHONPATH)")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="also measure the gateway rows of this source tree (same rounds, same floors), "
                             "e.g. git archive of the previous commit unpacked into DIR; rows marked @before")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite database)")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= MAX_DURATION:
        parser.error(f"--duration must be between 1 and {MAX_DURATION} seconds")
    if args.database_url:
        args.database.append(args.database_url)
    args.database = args.database or ["sqlite"]
    for database in args.database:
        if database != "sqlite" and not (urlsplit(database).path.lstrip("/").startswith("bench")
                                         and database.startswith("postgresql")):
            parser.error("--database must be sqlite or a PostgreSQL database whose name starts with bench "
                         "(it is emptied)")
    return args


def run(args: argparse.Namespace, database: str, workdir: Path, crypto_pay_url: str) -> dict:
    database_url = f"sqlite:///{workdir / 'bench.db'}" if database == "sqlite" else database
    name = "SQLite" if database == "sqlite" else "PostgreSQL"
    bench = Bench(args, database_url, workdir, crypto_pay_url)
    seeded = None
    try:
        bench.prepare_database()
        bench.start()
        bench.warm_up()
        rounds = [bench.one_round(f"r{number}") for number in range(1, args.rounds + 1)]
        sections, raw = {name: summarize(rounds)}, {name: rounds}
        if args.big:
            started = time.monotonic()
            bench.python("bench/seed_events.py", "events", "--count", str(args.big_events), timeout=3600)
            seeded = time.monotonic() - started
            sys.stderr.write(f"stored {args.big_events} events in {seeded:.0f} s\n")
            big = f"{name}, {args.big_events:,} events"
            rounds = [bench.one_round(f"b{number}") for number in range(1, args.rounds + 1)]
            sections[big], raw[big] = summarize(rounds), rounds
    finally:
        bench.stop()
    return {"sections": sections, "rounds": raw, "big_seed_seconds": round(seeded, 1) if seeded else None,
            "versions": database_versions(database_url)}


def database_versions(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=FULL)"
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://", 1)) as connection:
        version = connection.execute("SHOW server_version").fetchone()[0]
        sync = connection.execute("SHOW synchronous_commit").fetchone()[0]
    return f"PostgreSQL {version.split()[0]} (synchronous_commit={sync}), same machine, over TCP loopback"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.stderr.write("wrk is not installed: apt-get install wrk (or make bench, which installs it)\n")
        return 2
    # SIGTERM (e.g. from make or a CI timeout) unwinds like Ctrl-C, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.path.insert(0, str(ROOT))
    from tests.fakes.cryptopay import FakeCryptoPay

    outcome: dict = {"sections": {}, "rounds": {}, "versions": {}, "big_seed_seconds": {}}
    with FakeCryptoPay(token=CRYPTOBOT_TOKEN) as crypto_pay:
        for database in args.database:
            workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
            try:
                one = run(args, database, workdir, crypto_pay.api_url)
            except BenchError as error:
                sys.stderr.write(f"benchmark failed: {error}\n")
                return 1
            finally:
                if args.keep:
                    sys.stderr.write(f"work directory kept: {workdir}\n")
                else:
                    shutil.rmtree(workdir, ignore_errors=True)
            for key in ("sections", "rounds"):
                outcome[key].update(one[key])
            name = next(iter(one["sections"]))
            outcome["versions"][name] = one["versions"]
            outcome["big_seed_seconds"][name] = one["big_seed_seconds"]
            crypto_pay.invoices.clear()
            crypto_pay.clear_requests()
    today = datetime.date.today().isoformat()
    machine = machine_description()
    rendered = targets_table(outcome["sections"]) + "\n\n" + table(outcome["sections"])
    if args.big:
        rendered += "\n\n" + growth_table(outcome["sections"])
    if args.compare:
        rendered += "\n\n" + compare_table(outcome["sections"])
    settings = {key: getattr(args, key) for key in ("duration", "threads", "connections", "rounds", "ingest_orders",
                                                    "big", "big_events", "gunicorn_arg", "app", "compare")}
    path = result_path(today)
    path.write_text(json.dumps({
        "date": today, "machine": machine, "settings": settings, **outcome, "table": rendered,
    }, indent=2, default=str) + "\n")
    if args.write_doc:
        write_doc(args.write_doc, today, machine, settings, outcome, rendered)
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


def machine_description() -> dict:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": memory_gib(), "kernel": os.uname().release,
            "python": sys.version.split()[0]}


if __name__ == "__main__":
    sys.exit(main())
