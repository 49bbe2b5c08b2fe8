"""Fuzzing ``open_store``: whatever the URL, only typed errors escape (issue 17).

Real stores only: SQLite files under the test's temp dir (the default host
path is redirected there), etcd URLs parsed and opened without a request.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcslabel.allocation.stores import open_store, sqlite
from mcslabel.cli import main
from mcslabel.errors import InvalidInput, MCSLabelError, StoreNotFound

# Pieces that have broken parsers before, glued together with random text.
_PIECES = [
    "etcd://",
    "etcds://",
    "sqlite://",
    "memory://",
    "/",
    "?",
    "&",
    "=",
    ",",
    ":",
    "@",
    "[",
    "]",
    "%",
    "%00",
    "\x00",
    "..",
    "lease_ttl",
    "timeout=",
    "busy_timeout=",
    "synchronous=",
    "password_file=",
    "user",
    "127.0.0.1:1",
    "a" * 300,
    "²",
]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sqlite, "SYSTEM_PATH", tmp_path / "default" / "labels.db")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("MCSLABEL_ETCD_PASSWORD", raising=False)
    return tmp_path


def _url(tmp: Path) -> st.SearchStrategy[str]:
    text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
    pieces = st.sampled_from([*_PIECES, str(tmp)]) | text
    return st.lists(pieces, max_size=8).map("".join)


def test_open_store_fuzz_raises_only_typed_errors(sandbox: Path) -> None:
    untyped: list[tuple[str, str]] = []

    @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
    @given(url=_url(sandbox), create=st.booleans(), read_only=st.booleans())
    def attempt(url: str, create: bool, read_only: bool) -> None:
        # Files may only appear under the sandbox: elsewhere, never ask for creation.
        inside = url.startswith(f"sqlite://{sandbox}/") and ".." not in url
        try:
            store = open_store(url, create=create and inside, read_only=read_only)
        except MCSLabelError:
            return
        except Exception as exc:  # what the test looks for
            untyped.append((url, repr(exc)))
            return
        store.close()

    attempt()
    assert untyped == []


@pytest.mark.parametrize(
    "url",
    [
        "etcd://a,b/c?lease_ttl,5",
        "etcd://a/c?timeout",
        "etcd://a/c?&&=",
        "etcd://h:²/p",
        "etcd://h/p?password_file=%00",
        "sqlite:///" + "a" * 300 + "/labels.db",
        "sqlite:///tmp/" + "b" * 256,
        "sqlite:///" + "c/" * 2100 + "labels.db",
    ],
)
def test_known_bad_urls_are_invalid_input_and_exit_2(
    sandbox: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InvalidInput):
        open_store(url, create=True)
    assert main(["list", "--store", url]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_path_through_a_file_is_a_typed_error(sandbox: Path) -> None:
    (sandbox / "file").write_text("x")
    with pytest.raises(StoreNotFound, match="not a usable path"):
        open_store(f"sqlite://{sandbox}/file/labels.db", create=True)
    assert not os.path.exists(sandbox / "file" / "labels.db")
