"""The package layout is a rule, not a habit: imports point inward only.

Reads every module's imports with ``ast`` (nothing is imported) and fails when
an import points outward: the model importing a job, a job importing the CLI
or an integration, one job importing another job's private module, the CLI or
the pytest plugin reaching into a private module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "mcslabel"

MODEL = {
    "mcslabel.level",
    "mcslabel._levelsyntax",
    "mcslabel._lazy",
    "mcslabel.context",
    "mcslabel.errors",
    "mcslabel.pairs",
}
# What the model may import outside mcslabel: pure computation, no I/O, no bindings.
MODEL_STDLIB = {"__future__", "attrs", "collections", "hashlib", "math", "re", "typing"}
# Private model modules every package may use: the lazy loader of the packages' front doors.
SHARED_PRIVATE = {"mcslabel._lazy"}
# ... which alone may import importlib (it resolves names, it does no I/O itself).
LAZY_LOADER_STDLIB = MODEL_STDLIB | {"importlib"}
JOBS = ("allocation", "relabeling", "verification")
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Every mcslabel module this one imports (absolute or relative)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # "from mcslabel.relabeling import engine" imports a module too.
            found.update(f"{base}.{a.name}" for a in node.names)
    modules = _modules()
    return {m for m in found if m in modules}


def _layer(module: str) -> str:
    if module in MODEL or module == "mcslabel":
        return "model" if module in MODEL else "front"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "front"


def _is_private(module: str) -> bool:
    return any(p.startswith("_") and p != "__init__" for p in module.split(".")[1:])


def _violations() -> list[str]:
    bad: list[str] = []
    for name, path in _modules().items():
        layer = _layer(name)
        for target in _imports(name, path):
            tlayer = _layer(target)
            if target == name or tlayer == layer:
                continue
            why = None
            if layer == "model" and tlayer != "model":
                why = "the model imports no job"
            elif tlayer == "cli":
                why = "nothing outside the CLI imports the CLI"
            elif tlayer == "integrations" and layer in JOBS:
                why = "a job never imports an integration"
            elif layer in JOBS and tlayer == "front":
                why = "a job never imports the front door (cycles)"
            elif _is_private(target) and target not in SHARED_PRIVATE:
                why = "another package's private module"
            if why:
                bad.append(f"{name} imports {target}: {why}")
    return bad


def test_imports_point_inward() -> None:
    assert _violations() == []


def _top_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found - {"mcslabel"}


@pytest.mark.parametrize("name", sorted(MODEL))
def test_the_model_imports_no_io(name: str) -> None:
    path = _modules()[name]
    allowed = LAZY_LOADER_STDLIB if name in SHARED_PRIVATE else MODEL_STDLIB
    assert _top_level_imports(path) <= allowed, f"{name} imports I/O or bindings"


def test_no_module_grows_far_past_the_size_rule() -> None:
    # Modules are ~<= MAX_LINES; a tenth over is tolerated, beyond that: split by concept.
    limit = MAX_LINES + MAX_LINES // 10
    sizes = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert {n: k for n, k in sizes.items() if k > limit} == {}


def test_every_top_level_module_has_a_layer() -> None:
    # A new module beside level.py is model or front door, never unclassified.
    flat = {n for n, p in _modules().items() if n.count(".") == 1 and p.name != "__init__.py"}
    unclassified = flat - MODEL
    assert not unclassified, f"register {sorted(unclassified)} in MODEL (or give it a package)"


def test_the_rule_catches_an_outward_import(tmp_path: Path) -> None:
    # The checker itself must be able to fail: the model importing a job.
    assert _layer("mcslabel.level") == "model"
    assert _layer("mcslabel.allocation.allocator") == "allocation"
    assert _is_private("mcslabel.allocation._index")
    assert not _is_private("mcslabel.allocation.stores")


def test_four_jobs_at_a_glance() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert {"allocation", "relabeling", "verification", "integrations", "cli"} <= packages
    for pkg in packages:
        doc = ast.get_docstring(ast.parse((PACKAGE / pkg / "__init__.py").read_text()))
        assert (doc and "May import" in doc) or pkg == "cli", f"{pkg}/__init__.py says what it owns"


@pytest.mark.parametrize("name", sorted(n for n in _modules() if not n.endswith("__init__")))
def test_public_modules_declare_all(name: str) -> None:
    path = _modules()[name]
    if _is_private(name) or path.name == "__main__.py":
        pytest.skip("private module")
    tree = ast.parse(path.read_text())
    names = {
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    assert "__all__" in names, f"{name} has no __all__"


def test_import_mcslabel_stays_cheap() -> None:
    # Only the errors load with the front door: the model (attrs) and every job on first use.
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import mcslabel\n"
        "new = set(sys.modules) - before\n"
        "loaded = sorted(m for m in new if m.startswith('mcslabel'))\n"
        "assert loaded == ['mcslabel', 'mcslabel._lazy', 'mcslabel.errors'], loaded\n"
        "assert not {'attrs', 'typing', 're', 'pathlib'} & new, sorted(new)\n"
        "from mcslabel import relabel, verify, Allocator, open_store, load_policy, Level\n"
        "import mcslabel.relabeling, mcslabel.verification\n"
        "assert callable(mcslabel.relabel) and callable(mcslabel.verify)\n"
        "assert str(mcslabel.Level.parse('s0:c2,c1')) == 's0:c1,c2'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
