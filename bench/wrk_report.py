"""The figures of bench/run_wrk.py: per-run progress lines, medians over rounds, the Markdown tables and
docs/performance.md."""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

# The issue #16 targets: each row's ratio to its floor (see run_wrk.FLOORS), and the worst p99.
TARGETS = {"new": 0.35, "repeat": 0.5, "status": 0.7}
P99_TARGET_MS = 100
DOC_BEGIN, DOC_END = "<!-- bench:begin (written by bench/run_wrk.py --write-doc) -->", "<!-- bench:end -->"


def report_progress(label: str, name: str, run: dict) -> None:
    flags = f" errors={run['errors']}" if run["errors"] else ""
    if run.get("database_cpu_ms_per_request") is not None:
        flags += f" postgres cpu {run['database_cpu_ms_per_request']:.2f} ms/req"
    if "exactly_once" in run:
        flags += f" fulfilled={run['fulfilled']}" + ("" if run["exactly_once"] else " NOT-EXACTLY-ONCE")
    sys.stderr.write(f"[{label}] {name:<10} {run['rps']:8.1f} req/s  p50 {run['p50_us'] / 1000:6.1f} ms  "
                     f"p99 {run['p99_us'] / 1000:7.1f} ms  x{run['ratio']:.2f} of {run['floor']}  "
                     f"cpu {run['cpu_ms_per_request']:.2f} ms/req  load {run['load_1min'][0]:.1f}{flags}\n")


def summarize(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """Per endpoint: medians over rounds; the ratio is the median of the per-round ratios."""
    summary = {}
    for name in rounds[0]:
        runs = [one[name] for one in rounds if name in one]
        loads = [value for run in runs for value in run["load_1min"]]
        summary[name] = {
            "floor": runs[0]["floor"],
            "rps": statistics.median(run["rps"] for run in runs),
            "p50_ms": statistics.median(run["p50_us"] for run in runs) / 1000,
            "p99_ms": statistics.median(run["p99_us"] for run in runs) / 1000,
            "ratio": statistics.median(run["ratio"] for run in runs),
            "ratio_to_bare": statistics.median(run["ratio_to_bare"] for run in runs),
            "cpu_ms": statistics.median(run["cpu_ms_per_request"] for run in runs),
            "cpu_ratio": statistics.median(run["cpu_ratio"] for run in runs),
            "database_cpu_ms": (None if runs[0].get("database_cpu_ms_per_request") is None
                                else statistics.median(run["database_cpu_ms_per_request"] for run in runs)),
            "ratios": [round(run["ratio"], 3) for run in runs],
            "rss_mib": statistics.median(run["rss_mib_mean"] or 0 for run in runs),
            "rss_mib_max": max(run["rss_mib_max"] or 0 for run in runs),
            "workers": max(run["workers"] for run in runs),
            "errors": sum(run["errors"] for run in runs),
            "load_1min": [min(loads), max(loads)],
            "exactly_once": all(run.get("exactly_once", True) for run in runs),
            "bodies_exhausted": any(run.get("bodies_exhausted") for run in runs),
        }
    return summary


LABELS = {"bare": "bare Flask `GET /bare`", "bare_read": "read floor: `GET /bare/read` (one SELECT by key)",
          "bare_write": "write floor: `POST /bare/write` (one committed INSERT)",
          "bare_shape": "a new webhook's ten statements alone: `POST /bare/shape`",
          "new": "new CryptoBot webhooks `POST /webhook/cryptobot`",
          "repeat": "repeated CryptoBot webhooks (the same bodies again)",
          "status": "`GET /api/status/{id}`", "payment": "`POST /api/payment` (CryptoBot, local fake Crypto Pay)"}
FLOOR_NAMES = {"bare": "bare", "bare_read": "read floor", "bare_write": "write floor"}


def _load(row: dict) -> str:
    low, high = row["load_1min"]
    return f"{low:.1f}–{high:.1f}"


def targets_table(sections: dict[str, dict[str, dict]]) -> str:
    """The issue #16 table: one column per database (the first section of each), ratios to the floors."""
    columns = {name: summary for name, summary in sections.items() if "," not in name}
    names = list(columns)
    lines = ["| | " + " | ".join(names) + " | target |", "| --- |" + " ---: |" * len(names) + " --- |"]

    def row(label: str, cell, target: str) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(columns[name]) for name in names) + f" | {target} |")

    def ratio(key: str):
        def cell(summary: dict) -> str:
            if key not in summary:
                return "—"
            one = summary[key]
            mark = "" if key not in TARGETS else (" ✓" if one["ratio"] >= TARGETS[key] else " ✗")
            return f"{one['ratio']:.2f}×{mark} ({one['rps']:.0f} r/s)"
        return cell

    row("floor: one SELECT / bare Flask", ratio("bare_read"), "—")
    row("floor: one committed INSERT / bare Flask", ratio("bare_write"), "—")
    row("a new webhook's ten statements alone / write floor", ratio("bare_shape"), "—")
    row("new webhooks / write floor", ratio("new"), f"≥ {TARGETS['new']}×")
    row("repeated webhooks / read floor", ratio("repeat"), f"≥ {TARGETS['repeat']}×")
    row("`GET /api/status` / read floor", ratio("status"), f"≥ {TARGETS['status']}×")

    def worst_p99(summary: dict) -> str:
        p99 = max(summary[key]["p99_ms"] for key in TARGETS if key in summary)
        return f"{p99:.0f} ms" + (" ✓" if p99 < P99_TARGET_MS else " ✗")

    row("worst p99 of the three", worst_p99, f"< {P99_TARGET_MS} ms")
    row("payment creations per second (local fake Crypto Pay)",
        lambda summary: f"{summary['payment']['rps']:.0f} r/s" if "payment" in summary else "—", "—")
    row("RSS per gateway worker (max)", lambda summary: f"{max(summary[key]['rss_mib_max'] for key in summary if key in TARGETS or key == 'payment'):.0f} MiB", "—")
    row("exactly-once (balance = paid orders), non-2xx answers",
        lambda summary: ("held" if all(one["exactly_once"] for one in summary.values()) else "**BROKEN**")
        + f", {sum(one['errors'] for one in summary.values())}", "held, 0")
    row("1-minute load average during the runs",
        lambda summary: _load({"load_1min": [min(one["load_1min"][0] for one in summary.values()),
                                              max(one["load_1min"][1] for one in summary.values())]}), "—")
    return "\n".join(lines)


def table(sections: dict[str, dict[str, dict]]) -> str:
    header = ("| endpoint | database | req/s | p50 ms | p99 ms | × floor | per-round × floor | server CPU ms/req "
              "| PostgreSQL CPU ms/req | RSS/worker MiB | load (1 min) | errors |\n"
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lines = [header]
    for database, summary in sections.items():
        for name, row in summary.items():
            note = "" if row["exactly_once"] else " (NOT exactly once!)"
            note += " (bodies ran out: raise --ingest-orders)" if row["bodies_exhausted"] else ""
            ratio = "—" if name == "bare" else f"{row['ratio']:.2f} of {FLOOR_NAMES[row['floor']]}"
            per_round = "—" if name == "bare" else ", ".join(f"{value:.2f}" for value in row["ratios"])
            label = LABELS[name.split("@")[0]] + (" — **before**" if "@" in name else "")
            database_cpu = "—" if row.get("database_cpu_ms") is None else f"{row['database_cpu_ms']:.2f}"
            lines.append(f"| {label}{note} | {database} | {row['rps']:.0f} | {row['p50_ms']:.1f} | "
                         f"{row['p99_ms']:.1f} | {ratio} | {per_round} | {row['cpu_ms']:.2f} | {database_cpu} | "
                         f"{row['rss_mib']:.0f} | {_load(row)} | {row['errors']} |")
    return "\n".join(lines)


def growth_table(sections: dict[str, dict[str, dict]]) -> str:
    """With --big: each endpoint's ratio to its floor on the big database over its ratio on the small one."""
    lines = ["| endpoint | database | × floor, small | × floor, big | big ÷ small |", "| --- | --- | ---: | ---: | ---: |"]
    for big_name, big in sections.items():
        if "," not in big_name:
            continue
        small_name = big_name.split(",", 1)[0]
        small = sections[small_name]
        for name in big:
            if name != "bare" and name in small:
                lines.append(f"| {LABELS[name.split('@')[0]]}{' (before)' if '@' in name else ''} | {small_name} | {small[name]['ratio']:.3f} | {big[name]['ratio']:.3f} | "
                             f"{big[name]['ratio'] / small[name]['ratio']:.2f} |")
    return "\n".join(lines)


def write_doc(path: Path, today: str, machine: dict, settings: dict, outcome: dict, rendered: str) -> None:
    """Replace the generated part of `path` (between DOC_BEGIN and DOC_END), keeping the written notes around it."""
    versions = "; ".join(f"{name}: {text}" for name, text in outcome["versions"].items())
    generated = "\n".join([
        DOC_BEGIN,
        f"Measured {today} by `make bench` ({settings['rounds']} rounds of {settings['duration']:g} s per row, "
        f"wrk `-t{settings['threads']} -c{settings['connections']}`, endpoints interleaved within each round; "
        "medians; each ratio is the median of the per-round ratios to that round's floor).",
        "",
        f"Machine: {machine['cpus']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB, Linux "
        f"{machine['kernel']}, Python {machine['python']}, gunicorn sync workers as `gunicorn.conf.py` sets them "
        f"(cores + 1, at least 3); {versions}.",
        "",
        rendered,
        DOC_END,
    ])
    text = path.read_text() if path.exists() else "# Performance\n\n" + DOC_BEGIN + "\n" + DOC_END + "\n"
    if DOC_BEGIN not in text:
        text = text.rstrip("\n") + "\n\n" + DOC_BEGIN + "\n" + DOC_END + "\n"
    pattern = re.compile(re.escape(DOC_BEGIN) + ".*?" + re.escape(DOC_END), re.S)
    path.write_text(pattern.sub(lambda _: generated, text, count=1))


def compare_table(sections: dict[str, dict[str, dict]]) -> str:
    """With --compare: each gateway row's ratio to its floor before and after, from the same rounds."""
    lines = ["| row | database | × floor before | × floor after | per round before → after | CPU ms/req before → after |",
             "| --- | --- | ---: | ---: | --- | --- |"]
    for database, summary in sections.items():
        for name in ("new", "repeat", "status"):
            before, after = summary.get(name + "@before"), summary.get(name)
            if before is None or after is None:
                continue
            pairs = ", ".join(f"{b:.2f} → {a:.2f}" for b, a in zip(before["ratios"], after["ratios"]))
            lines.append(f"| {LABELS[name]} | {database} | {before['ratio']:.2f} | {after['ratio']:.2f} | {pairs} | "
                         f"{before['cpu_ms']:.2f} → {after['cpu_ms']:.2f} |")
    return "\n".join(lines)
