"""Client instructions per request, counted by valgrind's callgrind: the gateway's own CPU without the noise.

On a shared machine the same code's CPU per request moves by a fifth between runs, which hides a change worth a
tenth. Instructions executed in user space repeat to a few thousandths. Each figure is the difference of two runs
of the app in-process (`profile_app.py`'s setup, the same seeded requests), one serving `--requests` more than
the other, divided by that number, so the start-up and seeding cancel out. Not counted: the kernel (system
calls, loopback TCP), the database server, and what cache misses and other processes cost under gunicorn.

    .venv/bin/python bench/instructions.py --endpoint new --database-url postgresql+psycopg://…/bench_profile
    .venv/bin/python bench/instructions.py --compare /tmp/before     # another source tree, same requests
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Requests served in both runs before the counted ones: caches, prepared statements and pools settle first.
WARM = 50


def count(tree: Path, endpoint: str, database_url: str | None, served: int, prepared: int) -> int:
    """Instructions of one whole run of `tree`'s app serving `served` of `prepared` requests under callgrind."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", str(tree / ".venv/bin/python"),
               str(Path(__file__).resolve()), "--serve", str(served), "--prepare", str(prepared),
               "--endpoint", endpoint, "--tree", str(tree)]
    if database_url:
        command += ["--database-url", database_url]
    run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected\s*:\s*(\d+)", run.stderr)
    if run.returncode != 0 or found is None:
        raise SystemExit(f"{tree}: the counted run failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return int(found.group(1))


def per_request(tree: Path, endpoint: str, database_url: str | None, requests: int) -> float:
    prepared = 2 * requests
    return (count(tree, endpoint, database_url, prepared, prepared)
            - count(tree, endpoint, database_url, requests, prepared)) / requests


def serve(tree: Path, endpoint: str, database_url: str | None, served: int, prepared: int) -> None:
    """Inside callgrind: build `tree`'s app as profile_app.py does and serve the requests."""
    sys.path[:0] = [str(tree), str(tree / "bench")]
    import profile_app
    from tests.fakes.cryptopay import FakeCryptoPay

    workdir = Path(tempfile.mkdtemp(prefix="gateway-instructions-"))
    report, sys.stdout = sys.stdout, open(os.devnull, "w")  # the app's JSON log lines go to stdout
    crypto_pay = FakeCryptoPay(token=profile_app.CRYPTOBOT_TOKEN).start()
    try:
        _bare, app = profile_app.build(database_url or f"sqlite:///{workdir / 'instructions.db'}", workdir,
                                       crypto_pay.api_url)
        make = {"new": lambda n, batch: profile_app.webhook_environs(app, n, batch, workdir),
                "repeat": lambda n, batch: profile_app.repeat_environs(app, n, batch, workdir),
                "status": lambda n, _batch: profile_app.status_environs(n)}[endpoint]
        warm, environs = make(WARM, 1), make(prepared, 2)
        for environ in warm + environs[:served]:
            profile_app.call(app, environ)
    finally:
        crypto_pay.stop()
        sys.stdout.close()
        sys.stdout = report
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=("new", "repeat", "status"), default="new")
    parser.add_argument("--requests", type=int, default=200, help="requests counted (each run serves more)")
    parser.add_argument("--database-url", help="PostgreSQL database named bench* (emptied); default SQLite in /tmp")
    parser.add_argument("--compare", type=Path, metavar="DIR", help="another source tree (with its .venv) to count")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.database_url and "/bench" not in args.database_url:
        parser.error("--database-url must name a database starting with bench (it is emptied)")
    if args.serve is not None:
        serve(args.tree, args.endpoint, args.database_url, args.serve, args.prepare)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is missing: apt-get install valgrind")
    for tree in [ROOT] + ([args.compare.resolve()] if args.compare else []):
        figure = per_request(tree, args.endpoint, args.database_url, args.requests)
        print(f"{tree}: {figure / 1e6:.3f} M instructions per {args.endpoint} request", flush=True)


if __name__ == "__main__":
    main()
