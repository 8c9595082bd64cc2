"""webhook.service and webhook-worker@.service."""

import os
import re
import subprocess
import sys

import pytest

UNITS = ("webhook.service", "webhook-worker@.service")
MAX_EXPOSURE = 3.0


def directives(path):
    """All `Key=value` lines of a unit file, as (key, value) pairs in order."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    return pairs


def values(path, key):
    return [value for k, value in directives(path) if k == key]


@pytest.mark.parametrize("unit", UNITS)
def test_unit_runs_unprivileged_with_the_secret_environment_file(repo_root, unit):
    path = repo_root / unit
    assert values(path, "User") == ["webhook"]
    assert values(path, "EnvironmentFile") == ["/etc/webhook/webhook.env"]
    assert values(path, "WorkingDirectory") == ["/opt/webhook/app"]
    assert values(path, "Restart") == ["on-failure"]
    assert values(path, "StateDirectory") == ["webhook"]
    assert values(path, "ProtectSystem") == ["strict"]
    assert values(path, "NoNewPrivileges") == ["yes"]
    assert values(path, "CapabilityBoundingSet") == [""]
    assert values(path, "UMask") == ["0077"]


def test_web_unit_migrates_once_then_serves_with_the_config_file(repo_root):
    path = repo_root / "webhook.service"
    assert values(path, "ExecStartPre") == ["/opt/webhook/venv/bin/flask --app wsgi db upgrade"]
    [exec_start] = values(path, "ExecStart")
    assert exec_start.startswith("/opt/webhook/venv/bin/gunicorn -c /opt/webhook/app/gunicorn.conf.py")
    assert exec_start.endswith(" wsgi:app")
    assert "PROMETHEUS_MULTIPROC_DIR=/run/webhook/prometheus" in values(path, "Environment")
    assert "webhook/prometheus" in values(path, "RuntimeDirectory")[0].split()


def test_stop_timeout_covers_gunicorns_graceful_timeout(repo_root):
    conf = (repo_root / "gunicorn.conf.py").read_text(encoding="utf-8")
    graceful = int(re.search(r"^graceful_timeout = (\d+)", conf, re.M).group(1))
    [stop] = values(repo_root / "webhook.service", "TimeoutStopSec")
    assert int(stop) > graceful


def test_worker_template_runs_one_provider_and_no_migration(repo_root):
    path = repo_root / "webhook-worker@.service"
    assert values(path, "ExecStart") == [
        "/opt/webhook/venv/bin/flask --app wsgi worker run --provider %i"
    ]
    assert values(path, "ExecStartPre") == []
    assert values(path, "KillSignal") == ["SIGTERM"]
    assert int(values(path, "TimeoutStopSec")[0]) >= 30
    assert "webhook.service" in values(path, "After")[0].split()


METRICS_DIR = "/run/webhook/prometheus"


def words(path, key):
    return [word for value in values(path, key) for word in value.split()]


@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_writes_metrics_to_the_shared_directory_from_the_start(repo_root, unit):
    path = repo_root / unit
    # Environment=, not the operator's env file: set before Python starts, as
    # prometheus_client picks multi-process mode when it is imported.
    assert f"PROMETHEUS_MULTIPROC_DIR={METRICS_DIR}" in words(path, "Environment")
    # systemd creates it (writable under ProtectSystem=strict) before ExecStart.
    assert METRICS_DIR in ["/run/" + name for name in words(path, "RuntimeDirectory")]
    assert values(path, "RuntimeDirectoryMode") == ["0700"]


@pytest.mark.parametrize("unit", UNITS)
def test_shared_metrics_directory_survives_any_one_unit_stopping(repo_root, unit):
    # systemd removes a unit's RuntimeDirectory when that unit stops, whoever else uses it.
    assert values(repo_root / unit, "RuntimeDirectoryPreserve") == ["yes"]


def test_workers_may_write_the_metrics_directory_but_not_gunicorns_socket_beside_it(repo_root):
    path = repo_root / "webhook-worker@.service"
    assert values(path, "RuntimeDirectory") == ["webhook/prometheus"]
    assert values(path, "ReadWritePaths") == []


def test_cli_wrapper_runs_commands_with_the_same_metrics_directory(repo_root):
    wrapper = (repo_root / "deploy" / "webhook-flask").read_text(encoding="utf-8")
    for option in (f"--setenv=PROMETHEUS_MULTIPROC_DIR={METRICS_DIR}", "--property=RuntimeDirectory=webhook/prometheus",
                   "--property=RuntimeDirectoryMode=0700", "--property=RuntimeDirectoryPreserve=yes"):
        assert option in wrapper.split()


def test_units_pass_systemd_analyze_verify(repo_root, tmp_path, need_tool):
    systemd_analyze = need_tool("systemd-analyze")
    # /opt/webhook does not exist here: verify would reject the ExecStart
    # paths, so they are swapped for /bin/true in a copy.
    for unit in UNITS + ("webhook-worker@telegram.service",):
        source = "webhook-worker@.service" if unit.endswith("@telegram.service") else unit
        text = (repo_root / source).read_text(encoding="utf-8")
        (tmp_path / unit).write_text(
            re.sub(r"/opt/webhook/venv/bin/[\w.-]+", "/bin/true", text), encoding="utf-8"
        )
    for unit in ("webhook.service", "webhook-worker@telegram.service"):
        result = subprocess.run(
            [systemd_analyze, "verify", "--man=no", f"./{unit}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )
        # verify exits 0 on unknown keys and bad values ("..., ignoring").
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
            result.stdout + result.stderr
        )


@pytest.mark.parametrize("unit", UNITS)
def test_exposure_score_is_at_most_3(repo_root, need_tool, unit):
    systemd_analyze = need_tool("systemd-analyze")
    result = subprocess.run(
        [systemd_analyze, "security", "--offline=true", "--no-pager", unit],
        cwd=repo_root, capture_output=True, text=True, timeout=60,
    )
    match = re.search(r"Overall exposure level for [^:]*: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


# MemoryDenyWriteExecute=yes in both units: nothing the app loads may need
# writable+executable memory.  Linux >= 6.3 offers the same rule per process
# (prctl PR_SET_MDWE), inherited across exec, so the real app can be tried
# under it here.
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1

EXERCISE_APP = r"""
import io, mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    raise SystemExit("write+execute memory was not refused: the check is void")
import wsgi
app = wsgi.app
with app.test_client() as client:
    assert client.get("/health").status_code in (200, 503)
    client.get("/metrics")
try:
    import argon2
except ImportError:
    pass
else:
    hasher = argon2.PasswordHasher()
    assert hasher.verify(hasher.hash("correct horse battery"), "correct horse battery")
try:
    import qrcode
except ImportError:
    pass
else:
    qrcode.make("https://qr.nspk.ru/AD10006M8KH3NQQC8QQQA0QQQ9QQQ").save(io.BytesIO())
for name in ("psycopg", "sqlalchemy", "PIL.Image", "prometheus_client", "cffi"):
    try:
        __import__(name)
    except ImportError:
        pass
print("ok")
"""

LAUNCH_UNDER_MDWE = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(%d, %d, 0, 0, 0) != 0:
    sys.exit(77)
os.execv(sys.executable, [sys.executable, "-c", sys.argv[1]])
""" % (PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_app_runs_without_writable_executable_memory(repo_root, tmp_path):
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'mdwe.db'}",
        WEBHOOK_API_TOKEN="mdwe-" + "x" * 40,
        SBP_GATEWAY="sandbox",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", LAUNCH_UNDER_MDWE, EXERCISE_APP],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=120,
    )
    if result.returncode == 77:
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), (
        result.stdout + result.stderr
    )

