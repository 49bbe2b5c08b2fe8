"""The examples of docs/orchestration.md and docs/pytest.md run as written.

Against the real dockerd, a scratch SQLite store and real xattrs; the pytest page's
example runs in a fresh directory through pytester, so it sees the plugin only through
its entry point, as a user's project would.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest

from mcslabel.allocation.allocator import Allocator
from mcslabel.allocation.stores import open_store
from tests.conftest import REPO

# Every test here talks to the real dockerd (deselect with -m "not docker").
pytestmark = pytest.mark.docker

pytest_plugins = ["pytester"]


def _python_blocks(page: str) -> list[str]:
    text = (REPO / "docs" / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, f"docs/{page} has no python example"
    return blocks


def test_orchestration_examples_run(
    docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"sqlite:///{tmp_path / 'labels.db'}"
    monkeypatch.setenv("MCSLABEL_STORE", store)
    open_store(store, create=True).close()  # the host's registry exists
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    script, sdk_example = _python_blocks("orchestration.md")
    namespace: dict[str, Any] = {}
    try:
        exec(compile(script, "docs/orchestration.md", "exec"), namespace)
    except BaseException:
        # A failing example must not leave its container running on the shared daemon.
        started = namespace.get("web")
        if started is not None:
            with contextlib.suppress(Exception):
                started.container.remove(force=True)
        raise
    web, data = namespace["web"], namespace["data"]
    assert namespace["volume_label"] == f"system_u:object_r:container_file_t:{web.level}"
    assert Path(data).parent == tmp_path
    # The script cleaned up: container gone, level free, volume back to no label.
    assert docker_client.containers.list(all=True, filters={"id": web.id}) == []
    allocator = Allocator(open_store(store))
    assert allocator.get(web.level) is None
    with pytest.raises(OSError, match="No data available"):
        os.getxattr(data, "security.selinux")

    sdk: dict[str, Any] = {}
    try:
        exec(compile(sdk_example, "docs/orchestration.md", "exec"), sdk)
    finally:
        if "container" in sdk:
            with contextlib.suppress(Exception):
                sdk["container"].remove(force=True)
    # sync adopted the container as job-42's (no conflict), and nothing is left held.
    assert sdk["adopted"].ok and sdk["adopted"].adopted
    assert allocator.owned_by("my-orchestrator:job-42") == []
    assert allocator.get(sdk["allocation"].level) is None


def test_pytest_page_example_runs_in_a_fresh_project(
    docker_client: Any, pytester: pytest.Pytester
) -> None:
    blocks = _python_blocks("pytest.md")
    for i, block in enumerate(blocks):
        pytester.makepyfile(**{f"test_example_{i}": block})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=7)


# --- the API reference renders Sphinx roles as links ------------------------------


def test_sphinx_roles_become_optional_links() -> None:
    import griffe

    ext = REPO / "scripts" / "griffe_sphinx_roles.py"
    package = griffe.load(
        "mcslabel",
        search_paths=[str(REPO / "src")],
        extensions=griffe.load_extensions(f"{ext}:SphinxRoles"),
    )
    engine = package["relabeling.engine"]
    restore_doc = engine["restore"].docstring.value
    assert ":class:" not in restore_doc and ":func:" not in restore_doc
    # "~" keeps the last component; the identifier is the resolved full path.
    assert (
        '<autoref identifier="mcslabel.errors.JournalError" optional>'
        "<code>JournalError</code></autoref>" in restore_doc
    )
    relabel_doc = engine["relabel"].docstring.value
    # An unqualified name resolves in the docstring's own scope (through imports), as in Sphinx.
    assert (
        '<autoref identifier="mcslabel.relabeling.restoration.restore" optional>'
        "<code>restore()</code></autoref>" in relabel_doc
    )
    left = [
        f"{obj.path}: {m.group(0)}"
        for obj in _objects(package)
        if obj.docstring is not None
        for m in re.finditer(r":(func|class|meth|mod|data|attr|exc|obj):`", obj.docstring.value)
    ]
    assert left == []


def _objects(obj: Any) -> list[Any]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias:
            found += _objects(member)
    return found
