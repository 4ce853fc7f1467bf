"""The shape every app keeps (../shared/STYLE.md), checked on the source so it cannot drift:
imports point one way, settings come only from config/settings.py, modules stay readable."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parents[2] / "apps"
MODULES = sorted(p for p in APPS.rglob("*.py") if "migrations" not in p.parts)
MAX_LINES = 500


def _imported(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names += [node.module or "", *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def _layer(path: Path) -> str | None:
    relative = path.relative_to(APPS).parts
    if len(relative) > 1 and relative[1] in ("services", "services.py", "selectors.py", "selectors"):
        return relative[1].removesuffix(".py")
    return None


@pytest.mark.parametrize("path", [p for p in MODULES if _layer(p)], ids=lambda p: str(p.relative_to(APPS)))
def test_services_and_selectors_never_import_tasks(path):
    """Tasks call services; a service that imported tasks would tie writes to Celery (and cycle)."""
    tasks = [n for n in _imported(ast.parse(path.read_text())) if n.endswith(".tasks") or ".tasks." in n]
    assert not tasks, f"{path.relative_to(APPS)} imports {tasks}: schedule through apps.core.scheduling"


def test_apps_read_settings_not_the_environment():
    offenders = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
                    and node.attr in ("environ", "getenv")):
                offenders.append(f"{path.relative_to(APPS)}:{node.lineno}")
            # getattr(settings, NAME, default) hides a setting's default away from config/settings.py.
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                    and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "settings"):
                offenders.append(f"{path.relative_to(APPS)}:{node.lineno}")
    assert not offenders, f"read these through config/settings.py instead: {offenders}"


def test_no_module_outgrows_one_screenful_of_use_cases():
    sizes = {str(p.relative_to(APPS)): len(p.read_text().splitlines()) for p in MODULES}
    long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert not long, f"split these into a package of one use case per module: {long}"


def test_the_asgi_entry_point_leaves_no_flag_for_the_processes_it_starts():
    """CASEHUB_ASGI gives the server its connection pool; a worker or a forking benchmark started
    from a process that loaded config.asgi (tests do) would otherwise share pooled connections."""
    import os

    import config.asgi  # noqa: F401

    assert "CASEHUB_ASGI" not in os.environ
