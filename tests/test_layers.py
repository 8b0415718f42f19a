"""Imports point one way (docs/architecture.md, "Layers"): a new wrong-way import fails here.

Every ``import`` and ``from ... import`` in the source tree is read with :mod:`ast`, also
those inside functions (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"deflect": "deflect", "models": "deflect.models", "eval": "deflect.eval", "kb_ingest": "deflect.kb_ingest"}

# the application's service core: configuration, the engine and what it records
SERVICE = {
    "deflect.config",
    "deflect.engine",
    "deflect.events",
    "deflect.experiment",
    "deflect.imap",
    "deflect.mail",
    "deflect.mailer",
    "deflect.provenance",
    "deflect.recorder",
    "deflect.redact",
    "deflect.tuning",
}
# layer -> the layers it may import (its own included); every layer may read deflect.__version__
ALLOWED = {
    "root": set(),  # deflect/__init__.py: nothing
    "core": {"core"},
    "models": {"core", "models"},
    "kb_ingest": {"core", "models", "kb_ingest"},
    "store": {"core", "store"},
    "service": {"core", "models", "store", "service"},
    "eval": {"core", "models", "kb_ingest", "store", "service", "eval"},
    "api": {"core", "models", "store", "service", "api"},
    "cli": {"root", "core", "models", "kb_ingest", "store", "service", "eval", "api", "cli"},
}


def layer(module: str) -> str | None:
    """The layer of a ``deflect...`` module name (None: not ours)."""
    parts = module.split(".")
    if parts[0] != "deflect":
        return None
    if len(parts) == 1:
        return "root"
    head = parts[1]
    if head in ("core", "models", "kb_ingest", "store", "eval", "api", "cli"):
        return head
    if ".".join(parts[:2]) in SERVICE:
        return "service"
    raise AssertionError(f"{module}: not in any layer; add it to tests/test_layers.py and docs/architecture.md")


def modules() -> dict[str, Path]:
    out = {}
    for folder, name in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join((name, *rel))] = path
    return out


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def test_the_old_top_level_names_are_gone():
    for path in modules().values():
        for line, name in imports(path, "deflect"):
            assert name.split(".")[0] not in ("models", "eval", "kb_ingest"), f"{path}:{line} imports {name}"


def test_imports_point_one_way():
    wrong = []
    for module, path in sorted(modules().items()):
        mine = layer(module)
        for line, name in imports(path, module):
            theirs = layer(name)
            if theirs is not None and theirs != "root" and theirs not in ALLOWED[mine]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {mine} imports {name} ({theirs})")
    assert not wrong, "wrong-way imports:\n" + "\n".join(wrong)


def test_the_rule_catches_a_wrong_way_import(tmp_path):
    """The check itself: a models module that imports the evaluation layer is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from deflect.eval.metrics import recall_at_k\n")
    ((line, name),) = imports(bad, "deflect.models.bad")
    assert layer(name) == "eval" and "eval" not in ALLOWED[layer("deflect.models.bad")]
