"""The layout rule of SPEC.md §2: the core never names a provider or a panel; it asks the registries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.panels.registry import PANELS
from services.providers import registry

ROOT = Path(__file__).resolve().parents[1]
# Where a provider's or panel's name may be written: its own package, the HTTP adapters, the settings
# (which validate every variable of SPEC.md §4), migrations, tests, and the tools beside the product.
ALLOWED = ("services/providers/", "services/panels/", "blueprints/", "migrations/", "tests/", "bench/", "deploy/",
           "webhook_config.py", ".venv/")
# T-Bank is the SBP provider's production gateway: as much a provider's name as the provider's own.
NAMES = {*registry.NAMES, *PANELS, "tbank"}


def _product_modules() -> list[Path]:
    return sorted(path for path in ROOT.rglob("*.py")
                  if not str(path.relative_to(ROOT)).startswith(ALLOWED) and "site-packages" not in path.parts)


def _provider_strings(tree: ast.AST) -> list[str]:
    return [f"{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in NAMES]


def _imported_packages(tree: ast.AST) -> list[str]:
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
    return imported


def _names_a_package(module: str) -> bool:
    parts = module.split(".")
    return (parts[:2] == ["services", "providers"] and len(parts) > 2 and parts[2] in registry.NAMES) or \
        (parts[:2] == ["services", "panels"] and len(parts) > 2 and parts[2] in PANELS)


def test_the_layout_check_sees_the_product():
    seen = {str(path.relative_to(ROOT)) for path in _product_modules()}
    assert {"services/events.py", "services/settle.py", "services/outbox.py", "commands/worker.py"} <= seen


@pytest.mark.parametrize("path", _product_modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_core_module_names_no_provider_or_panel(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert _provider_strings(tree) == [], "ask services/providers/registry.py or services/panels/registry.py"
    assert [m for m in _imported_packages(tree) if _names_a_package(m)] == [], "import the registry instead"


def test_the_check_catches_a_named_provider():
    tree = ast.parse('from services.providers.cryptobot import protocol\nPROVIDER = "CryptoBot"\n')
    assert _provider_strings(tree) == ["2: 'CryptoBot'"]
    assert [m for m in _imported_packages(tree) if _names_a_package(m)]


def test_every_listed_provider_is_a_package_with_a_plugin():
    for name in registry.NAMES:
        plugin = registry.plugin(name)
        assert plugin.name == name
        assert (ROOT / "services" / "providers" / name / "protocol.py").is_file()
        assert (ROOT / "services" / "providers" / name / "inbound.py").is_file()
