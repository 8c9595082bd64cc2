"""The figures of bench/run_wrk.py: per-run progress lines, medians over rounds, and the Markdown tables."""

from __future__ import annotations

import statistics
import sys


def report_progress(label: str, name: str, run: dict) -> None:
    flags = f" errors={run['errors']}" if run["errors"] else ""
    if "exactly_once" in run:
        flags += f" fulfilled={run['fulfilled']}" + ("" if run["exactly_once"] else " NOT-EXACTLY-ONCE")
    sys.stderr.write(f"[{label}] {name:<10} {run['rps']:8.1f} req/s  p50 {run['p50_us'] / 1000:6.1f} ms  "
                     f"p99 {run['p99_us'] / 1000:7.1f} ms  x{run['ratio']:.2f}  "
                     f"cpu {run['cpu_ms_per_request']:.2f} ms/req x{run['cpu_ratio']:.2f}{flags}\n")


def summarize(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """Per endpoint: medians over rounds; the ratio is the median of the per-round ratios."""
    summary = {}
    for name in rounds[0]:
        runs = [one[name] for one in rounds if name in one]
        summary[name] = {
            "rps": statistics.median(run["rps"] for run in runs),
            "p50_ms": statistics.median(run["p50_us"] for run in runs) / 1000,
            "p99_ms": statistics.median(run["p99_us"] for run in runs) / 1000,
            "ratio": statistics.median(run["ratio"] for run in runs),
            "cpu_ms": statistics.median(run["cpu_ms_per_request"] for run in runs),
            "cpu_ratio": statistics.median(run["cpu_ratio"] for run in runs),
            "ratios": [round(run["ratio"], 3) for run in runs],
            "rss_mib": statistics.median(run["rss_mib_mean"] or 0 for run in runs),
            "rss_mib_max": max(run["rss_mib_max"] or 0 for run in runs),
            "workers": max(run["workers"] for run in runs),
            "errors": sum(run["errors"] for run in runs),
            "exactly_once": all(run.get("exactly_once", True) for run in runs),
            "bodies_exhausted": any(run.get("bodies_exhausted") for run in runs),
        }
    return summary


LABELS = {"bare": "bare Flask GET /bare", "bare_read": "bare Flask GET /bare/read (one SELECT by key)",
          "bare_write": "bare Flask POST /bare/write (one committed INSERT)",
          "status": "GET /api/status/{id}", "payment": "POST /api/payment",
          "ingest": "POST /webhook/sbp/tbank (new)", "ingest_dup": "POST /webhook/sbp/tbank (50% dup)"}


def table(sections: dict[str, dict[str, dict]]) -> str:
    header = ("| endpoint | database | req/s | p50 ms | p99 ms | × bare | server CPU ms/req | CPU × bare "
              "| RSS/worker MiB | errors |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lines = [header]
    for database, summary in sections.items():
        for name, row in summary.items():
            note = "" if row["exactly_once"] else " (NOT exactly once!)"
            note += " (bodies ran out: raise --ingest-orders)" if row["bodies_exhausted"] else ""
            lines.append(f"| {LABELS[name]}{note} | {database} | {row['rps']:.0f} | {row['p50_ms']:.1f} | "
                         f"{row['p99_ms']:.1f} | {row['ratio']:.2f} | {row['cpu_ms']:.2f} | {row['cpu_ratio']:.2f} | "
                         f"{row['rss_mib']:.0f} | {row['errors']} |")
    return "\n".join(lines)


def growth_table(sections: dict[str, dict[str, dict]]) -> str:
    """With --big: each endpoint's ratio to bare on the big database over its ratio on the small one."""
    (small_name, small), (big_name, big) = list(sections.items())[:2]
    lines = [f"| endpoint | × bare, {small_name} | × bare, {big_name} | big ÷ small |", "| --- | ---: | ---: | ---: |"]
    for name in big:
        if name != "bare" and name in small:
            lines.append(f"| {LABELS[name]} | {small[name]['ratio']:.3f} | {big[name]['ratio']:.3f} | "
                         f"{big[name]['ratio'] / small[name]['ratio']:.2f} |")
    return "\n".join(lines)
