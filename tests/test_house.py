"""The house rules of the layout (docs: house.md, "A layout that fits"): imports run one way,
cli → server → adapters → register, and only the register touches SQLAlchemy.

Each import check runs in a fresh interpreter, so what other tests loaded does not count.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GATEWAY = REPO / "gateway"


def _loaded_after(imports: list[str]) -> set[str]:
    """The modules loaded in a fresh interpreter after importing ``imports``."""
    code = "import sys\n" + "".join(f"import {name}\n" for name in imports) + "print('\\n'.join(sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=60, check=True)
    return set(result.stdout.split())


def _imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_command_line_and_the_demo_load_no_sqlalchemy() -> None:
    """`nlr --help` and usage errors answer without the database layer."""
    loaded = _loaded_after(["gateway.cli", "gateway.demo"])
    assert "sqlalchemy" not in loaded
    assert "gateway.cli" in loaded and "gateway.demo" in loaded


@pytest.mark.parametrize("module", ["cli.py", "demo.py"])
def test_the_command_line_and_the_demo_never_import_sqlalchemy_even_later(module: str) -> None:
    """Not even inside a function: they call register-level functions for whatever needs it."""
    imported = _imported_names(GATEWAY / module)
    direct = {name for name in imported if name == "sqlalchemy" or name.startswith(("sqlalchemy.", "alembic"))}
    assert not direct, f"gateway/{module} imports {sorted(direct)}"
    internals = {"gateway.register.database", "gateway.register.models", "gateway.register.register"}
    assert not imported & internals, f"gateway/{module} imports {sorted(imported & internals)}"


def test_the_daemon_does_not_import_the_command_line() -> None:
    loaded = _loaded_after(["gateway.server", "gateway.web.site", "gateway.sip2", "gateway.ncip", "gateway.runtime"])
    assert "gateway.server" in loaded and "gateway.cli" not in loaded


def test_only_the_command_line_imports_itself() -> None:
    """No module under gateway/ but cli.py imports gateway.cli, at the top or inside a function."""
    offenders = [str(path.relative_to(REPO)) for path in sorted(GATEWAY.rglob("*.py"))
                 if path != GATEWAY / "cli.py"
                 and any(name == "gateway.cli" or name.startswith("gateway.cli.") for name in _imported_names(path))]
    assert not offenders
