"""The README's API example runs as written."""

from __future__ import annotations

import re

from tests.conftest import REPO


def test_readme_api_example_runs(capsys: object) -> None:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert str(namespace["volume"]) == "system_u:object_r:container_file_t:s0:c3,c9"
