"""The pytest plugin: loaded through its entry point in a fresh project, fixtures and options.

``pytester.runpytest_subprocess`` runs pytest in a new process in an empty directory with
no conftest and no ``-p``: the fixtures exist there only because the installed mcslabel
distribution declares the ``pytest11`` entry point. Labels and stores are real (xattrs on
ext4, SQLite, the installed policy).
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest

from mcslabel.allocation.allocator import Allocator
from mcslabel.allocation.stores import open_store
from mcslabel.level import Level

pytest_plugins = ["pytester"]

INNER_TESTS = """
import os
from pathlib import Path

import pytest


def _label(path):
    return os.getxattr(path, "security.selinux").rstrip(b"\\0").decode()


def test_level_is_a_fresh_pair_held_by_this_process(mcs_level, mcs_allocator):
    assert mcs_level.is_pair
    record = mcs_allocator.get(mcs_level)
    assert record.owners == (f"pid:{os.getpid()}@{mcs_allocator.host}",)


def test_level_released_by_the_test_itself(mcs_level, mcs_allocator):
    mcs_allocator.release(mcs_level, owner=f"pid:{os.getpid()}@{mcs_allocator.host}")
    assert mcs_allocator.get(mcs_level) is None


@pytest.mark.mcs_level(name="team-a")
def test_named_level_is_deterministic(mcs_level, mcs_allocator):
    assert mcs_level == mcs_allocator.name_level("team-a")


def test_volume_is_labeled_with_the_level(mcs_volume, mcs_level):
    Path(os.environ["VOLUME_LOG"]).open("a").write(f"{mcs_volume}\\n")
    assert _label(mcs_volume) == f"system_u:object_r:container_file_t:{mcs_level}"


@pytest.mark.mcs_volume(shared=True, read_only=True)
def test_shared_read_only_volume(mcs_volume):
    assert _label(mcs_volume) == "system_u:object_r:container_ro_file_t:s0"


def test_policy_root_option(selinux_policy):
    assert str(selinux_policy.path).startswith(os.environ["EXPECTED_POLICY_DIR"])
    assert selinux_policy.mls


def test_container_is_kept_from_host_paths(assert_blocked, mcs_level):
    report = assert_blocked(level=mcs_level, paths=["/var"])
    assert report.ok


def test_two_pairs_are_isolated(assert_isolated, mcs_level):
    other = "s0:c1,c2" if str(mcs_level) != "s0:c1,c2" else "s0:c3,c4"
    assert_isolated(mcs_level, other)


def test_a_level_is_not_isolated_from_a_level_it_dominates(assert_isolated):
    with pytest.raises(AssertionError):
        assert_isolated("s0:c1,c2,c3", "s0:c1,c2")
"""


def test_entry_point_is_declared() -> None:
    (entry,) = [
        e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "mcslabel"
    ]
    assert entry.value == "mcslabel.integrations.pytest_plugin"


def _run_inner(
    pytester: pytest.Pytester, tmp_path: Path, *args: str, policy_dir: Path
) -> tuple[pytest.RunResult, Path, Path]:
    pytester.makepyfile(test_inner=INNER_TESTS)
    store = tmp_path / "shared.db"
    log = tmp_path / "volumes.log"
    log.write_text("")
    pytester._monkeypatch.setenv("VOLUME_LOG", str(log))
    pytester._monkeypatch.setenv("EXPECTED_POLICY_DIR", str(policy_dir))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--strict-markers", f"--mcs-store=sqlite:///{store}", *args
    )
    return result, store, log


def test_fresh_project_gets_fixtures_via_entry_point(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    assert not list(pytester.path.glob("conftest.py"))
    result, store, log = _run_inner(pytester, tmp_path, policy_dir=Path("/etc/selinux"))
    result.assert_outcomes(passed=9)
    # Everything the fixtures took was given back: no allocation left, volumes restored.
    assert list(Allocator(open_store(f"sqlite:///{store}")).allocations()) == []
    volumes = log.read_text().split()
    assert len(volumes) == 1
    with pytest.raises(OSError, match="No data available"):  # unlabeled before and after
        os.getxattr(volumes[0], "security.selinux")


def test_policy_root_option_selects_another_policy(
    pytester: pytest.Pytester, centos_root: Path
) -> None:
    # centos_root skips locally but fails under CI when the shared root is missing.
    pytester.makepyfile(
        test_root="""
        def test_root(selinux_policy):
            assert selinux_policy.path.name == "policy.33"
            assert selinux_policy.container_contexts().process.type == "container_t"
            print("POLICY", selinux_policy.path)
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-s", f"--mcs-policy-root={centos_root}"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*POLICY {centos_root.resolve()}/policy/policy.33*"])


def test_disabled_plugin_has_no_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(mcs_level):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:mcslabel")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'mcs_level' not found*"])


def test_options_and_markers_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--mcs-store=URL*", "*--mcs-policy-root=DIR*"])
    result = pytester.runpytest_subprocess("--markers")
    result.stdout.fnmatch_lines(["*mcs_level(name=None, shared=False, ttl=None)*"])
    result.stdout.fnmatch_lines(["*mcs_volume(shared=False, read_only=False)*"])


def test_bad_store_url_fails_once_at_start(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(mcs_level):\n    pass\n\ndef test_y(mcs_level):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--mcs-store=nosuch://x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mcs-store: InvalidInput: unknown store URL*"])
    assert "test_x" not in result.stdout.str()  # no test ran, none errored


def test_bad_policy_root_fails_once_at_start(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile("def test_x(selinux_policy):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--mcs-policy-root={tmp_path}"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --mcs-policy-root: cannot list {tmp_path}/policy*"])


def test_misspelled_marker_keyword_fails_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.mcs_level(nmae="team-a")
        def test_x(mcs_level):
            pass

        def test_y():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*test_x: @pytest.mark.mcs_level has no keyword 'nmae' (did you mean 'name'?)*"]
    )


def test_failures_show_labels_and_the_callers_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from mcslabel import Level

        def test_same_level_is_not_isolated(assert_isolated):
            assert_isolated("s0:c1,c2", "s0:c2,c1")

        def test_levels_compare_as_labels():
            assert Level.parse("s0:c1,c2") == Level.parse("s0:c1,c3")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: s0:c1,c2 and s0:c1,c2 are not isolated*",
            "*s0:c1,c2 == s0:c1,c3*",
        ]
    )
    assert "Level(sensitivity" not in out and "frozenset" not in out
    # The helpers' own frames are hidden: the failure points at the test's line.
    assert "integrations/assertions.py" not in out and "pytest_plugin.py" not in out


# --- the project's own suite uses the fixtures too -------------------------------------


def test_own_suite_uses_fixtures(
    mcs_level: Level, mcs_volume: Path, mcs_allocator: Allocator
) -> None:
    record = mcs_allocator.get(mcs_level)
    assert record is not None
    label = os.getxattr(mcs_volume, "security.selinux").rstrip(b"\0").decode()
    assert label.endswith(f":container_file_t:{mcs_level}")
