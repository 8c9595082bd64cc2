"""Proof fixtures: each proof's figures are written to test-artifacts/proofs/ and printed after the run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "proofs"
FIGURES: list[dict[str, object]] = []
LOG_TAIL_LINES = 40


@pytest.fixture
def figures(request) -> dict[str, object]:
    """A dict the proof fills with its figures; kept even when the proof fails, which is when they matter."""
    record: dict[str, object] = {"proof": request.node.name}
    yield record
    # Other work on the machine skews every timing; the load average says how much.
    record["load_avg_1m"] = round(os.getloadavg()[0], 1)
    FIGURES.append(record)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = f"{request.node.name}-{record.get('database', 'unknown')}.json".replace("/", "_")
    (ARTIFACTS / name).write_text(json.dumps(record, indent=2, default=str) + "\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed proof's report carries the tails of the server and worker logs it wrote into tmp_path."""
    report = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and tmp_path is not None:
        for log in sorted(tmp_path.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"{log.name} (last {len(lines)} lines)", "\n".join(lines)))
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    """One line per proof in the CI output, so the figures are visible without opening artifacts."""
    if not FIGURES:
        return
    terminalreporter.section("proof figures")
    for record in FIGURES:
        terminalreporter.write_line(json.dumps(record, default=str))
