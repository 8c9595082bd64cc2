"""deploy/install.sh: syntax, lint and its --dry-run plan.

The installer itself needs root on a real server (apt, useradd, systemctl),
so it is never run for real here; --dry-run only prints what it would do.
"""

import re
import shutil
import subprocess

import pytest

SCRIPTS = ("deploy/install.sh", "deploy/check.sh", "deploy/webhook-flask")


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_syntax(repo_root, script):
    shell = "sh" if script.endswith("webhook-flask") else "bash"
    result = subprocess.run([shell, "-n", script], cwd=repo_root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_scripts_pass_shellcheck(repo_root, need_tool):
    shellcheck = need_tool("shellcheck", optional_on_ci=True)
    result = subprocess.run(
        [shellcheck, *SCRIPTS], cwd=repo_root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def source_tree(repo_root, tmp_path):
    """A copy of the deploy files with a stand-in app, for --dry-run."""
    src = tmp_path / "src"
    for name in ("deploy", "nginx"):
        shutil.copytree(repo_root / name, src / name)
    for name in ("webhook.service", "webhook-worker@.service", "gunicorn.conf.py"):
        shutil.copy(repo_root / name, src / name)
    (src / "wsgi.py").write_text("app = None\n", encoding="utf-8")
    (src / "requirements.txt").write_text("flask\n", encoding="utf-8")
    return src


def dry_run(source_tree, *args):
    return subprocess.run(
        ["bash", str(source_tree / "deploy" / "install.sh"), "--dry-run", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_dry_run_prints_the_whole_plan(source_tree):
    result = dry_run(source_tree, "--domain", "pay.example.com", "--certbot", "ops@example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for expected in (
        "useradd --system",
        "python3 -m venv /opt/webhook/venv",
        "/opt/webhook/venv/bin/pip install",
        "/etc/webhook/webhook.env",
        "/etc/systemd/system/webhook.service",
        "/etc/systemd/system/webhook-worker@.service",
        "/webhook.conf",  # sites-available/ (Debian's nginx) or conf.d/
        "nginx -t",
        "systemctl daemon-reload",
        "systemctl enable webhook.service webhook-worker@telegram.service",
        "webhook-worker@merchant.service",
        "certbot certonly --webroot -w /var/www/letsencrypt -d pay.example.com",
    ):
        if expected.startswith("useradd") and "user: webhook exists" in out:
            continue  # the machine running the tests happens to have the user
        assert expected in out, f"{expected!r} missing from:\n{out}"


def test_dry_run_without_certbot_prints_the_certbot_command(source_tree):
    result = dry_run(source_tree, "--domain", "pay.example.com")
    assert result.returncode == 0, result.stderr
    assert "--certbot YOU@EXAMPLE.COM" in result.stdout
    assert "+ certbot" not in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "--domain is required"),
        (("--domain", "pay.example.com;rm -rf /"), "not a host name"),
        (("--domain", "pay.example.com", "--bogus"), "unknown argument"),
    ],
)
def test_bad_arguments_are_refused(source_tree, args, message):
    result = dry_run(source_tree, *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_env_file_the_installer_writes_starts_in_production_once_filled_in(repo_root, tmp_path):
    from webhook_config import load_settings

    text = (repo_root / "deploy" / "webhook.env.example").read_text(encoding="utf-8")
    assert "__SET_ME__" in text  # what install.sh waits for before starting the service
    secrets = iter(f"generated-secret-{n:02d}-" + "g" * 40 for n in range(100))
    filled = re.sub("__GENERATE__", lambda _: next(secrets), text.replace("__DOMAIN__", "pay.example.com"))
    filled = filled.replace("__SET_ME__", "terminal-or-password-from-the-bank")
    env = dict(line.split("=", 1) for line in filled.splitlines() if line and not line.startswith("#"))
    settings = load_settings(env, tmp_path)
    assert settings.production and settings.sbp_gateway == "tbank"
