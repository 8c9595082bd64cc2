"""Shared fixtures for the deployment tests (gunicorn, systemd, nginx)."""

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# Debian puts nginx in /usr/sbin, which is not on every user's PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


@pytest.fixture(scope="session")
def repo_root():
    """The repository checkout holding the deployment files."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def need_tool():
    """Return a function that finds a system tool or gives up on the test.

    A developer without the tool gets a skip with the reason; on CI (CI is
    set) a missing tool fails the test instead, so it can't pass by skipping.
    `make deploy-deps` installs them all.
    """

    def find(name, *, optional_on_ci=False):
        path = shutil.which(name, path=_SEARCH_PATH)
        if path:
            return path
        reason = f"{name} is not installed (make deploy-deps installs it)"
        if os.environ.get("CI") and not optional_on_ci:
            pytest.fail(f"{reason}; CI must have it")
        pytest.skip(reason)

    return find
