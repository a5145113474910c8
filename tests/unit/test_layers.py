"""The import rules of ARCHITECTURE.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import lxflex

ROOT = Path(lxflex.__file__).parent


def _imports(package: str) -> set[str]:
    """Absolute names of the lxflex modules a package imports."""
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        module = "lxflex." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("lxflex")}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.rsplit(".", node.level)[0]
                    name = f"{base}.{node.module}" if node.module else base
                else:
                    name = node.module or ""
                if name.startswith("lxflex"):
                    found.add(name)
    return found


def test_simulator_is_independent_of_the_client() -> None:
    bad = {m for m in _imports("sim") if not m.startswith("lxflex.sim")}
    assert bad == set(), f"the simulator imports {bad}"


def test_client_imports_nothing_above_it() -> None:
    allowed = ("lxflex.powerflex", "lxflex.secret")
    bad = {m for m in _imports("powerflex") if not m.startswith(allowed)}
    assert bad == set(), f"the client imports {bad}"
