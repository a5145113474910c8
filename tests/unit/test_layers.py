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


# What each layer may import besides itself (ARCHITECTURE.md's house, top to bottom).
# ``lxflex`` alone is the package's ``__version__``; locks, revert, secret and times are
# leaf helpers any layer below the API may use; the API wraps the gateway password in a
# Secret where it arrives, and the state keeps it one.
_HELPERS = ("lxflex.locks", "lxflex.revert", "lxflex.secret", "lxflex.times")
ALLOWED = {
    "cli": ("lxflex", "lxflex.times"),  # HTTP to the daemon only: nothing below the API
    # The API reaches the driver for its errors only.
    "api": ("lxflex", "lxflex.service", "lxflex.driver", "lxflex.secret", "lxflex.times"),
    "service": ("lxflex.driver", "lxflex.host", "lxflex.state", "lxflex.powerflex", *_HELPERS),
    "driver": ("lxflex.host", "lxflex.powerflex", *_HELPERS),
    "host": (),
    "state": ("lxflex.secret",),
    "powerflex": ("lxflex.secret",),
    "sim": (),
}


def _outside(package: str) -> set[str]:
    own = f"lxflex.{package}"
    return {m for m in _imports(package) if m != own and not m.startswith(own + ".")}


def _allowed(module: str, allowed: tuple[str, ...]) -> bool:
    # "lxflex" is the package itself (its __version__), not everything under it.
    return any(module == a or (a != "lxflex" and module.startswith(a + ".")) for a in allowed)


def test_every_layer_imports_only_what_is_below_it() -> None:
    found = {
        package: sorted(m for m in _outside(package) if not _allowed(m, allowed))
        for package, allowed in ALLOWED.items()
    }
    assert found == {package: [] for package in ALLOWED}


def test_the_layers_above_reach_the_driver_through_its_face() -> None:
    """The service and the API import the driver's package (its ``__all__``), never a
    module inside it: what the driver offers is one list, pinned by test_public."""
    inside = {
        package: sorted(m for m in _imports(package) if m.startswith("lxflex.driver."))
        for package in ("service", "api")
    }
    assert inside == {"service": [], "api": []}


def test_the_rule_catches_an_upward_import() -> None:
    assert not _allowed("lxflex.service.volumes", ALLOWED["driver"])
    assert not _allowed("lxflex.api.server", ALLOWED["cli"])
    assert not _allowed("lxflex.state.store", ALLOWED["api"])
    assert _allowed("lxflex", ALLOWED["cli"])


def test_every_package_is_in_the_table() -> None:
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED)


def test_the_leaf_helpers_import_no_layer() -> None:
    for helper in ("locks", "revert", "secret", "times"):
        for node in ast.walk(ast.parse((ROOT / f"{helper}.py").read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not node.level, helper
                assert not (node.module or "").startswith("lxflex"), helper
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("lxflex") for a in node.names), helper
