"""``mcslabel allocate|reserve|release|renew|list|gc`` on real SQLite files."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mcslabel.allocation.stores.sqlite import SQLiteStore
from mcslabel.cli import main
from mcslabel.level import Level


@pytest.fixture
def url(tmp_path: Path) -> str:
    SQLiteStore(tmp_path / "labels.db").close()  # an existing registry
    return f"sqlite://{tmp_path}/labels.db"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_allocate_prints_a_pair_and_list_shows_it(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, out, _ = run(capsys, "allocate", "--store", url, "--owner", "docker:abc")
    assert code == 0
    level = Level.parse(out.strip())
    assert level.is_pair
    code, out, _ = run(capsys, "list", "--store", url)
    lines = out.splitlines()
    assert lines[0].split() == ["LEVEL", "OWNERS", "NAME", "EXPIRES", "HOST"]
    assert lines[1].split()[:2] == [str(level), "docker:abc"]
    code, out, _ = run(capsys, "list", "--store", url, "--json")
    data = json.loads(out)["allocations"]
    assert [d["level"] for d in data] == [str(level)] and data[0]["owners"] == ["docker:abc"]


def test_allocate_json_name_ttl_and_renew(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, _ = run(
        capsys,
        "allocate",
        "--store",
        url,
        "--owner",
        "ns:a",
        "--name",
        "team-a",
        "--ttl",
        "60",
        "--json",
    )
    assert code == 0
    first = json.loads(out)
    assert first["name"] == "team-a" and first["shared"] is True
    expires = datetime.datetime.fromisoformat(first["expires"])  # ISO 8601 UTC
    code, out, _ = run(capsys, "allocate", "--store", url, "--owner", "ns:b", "--name", "team-a")
    assert out.strip() == first["level"]
    code, out, _ = run(capsys, "renew", first["level"], "--ttl", "600", "--store", url, "--json")
    renewed = datetime.datetime.fromisoformat(json.loads(out)["expires"])
    assert code == 0 and renewed > expires + datetime.timedelta(seconds=500)


def test_reserve_release_and_errors(capsys: pytest.CaptureFixture[str], url: str) -> None:
    assert run(capsys, "reserve", "s0:c5", "--owner", "vol:1", "--store", url)[0] == 0
    code, out, err = run(capsys, "reserve", "s0:c5,c9", "--owner", "x", "--store", url)
    assert code == 3 and "dominates s0:c5, held by vol:1" in err
    code, out, err = run(capsys, "reserve", "s0:c5", "--owner", "x", "--store", url, "--json")
    assert code == 3 and json.loads(out)["error"]["type"] == "LabelInUse"
    code, out, err = run(capsys, "reserve", "s0:c1024", "--store", url)
    assert code == 2 and "out of range" in err
    code, out, err = run(capsys, "reserve", "s0", "--store", url)
    assert code == 2 and "no categories" in err
    code, out, err = run(capsys, "release", "s0:c7,c8", "--store", url)
    assert code == 3 and "not allocated" in err
    code, out, err = run(capsys, "release", "s0:c5", "--store", url)
    assert code == 0 and out == "released s0:c5\n"
    assert SQLiteStore(url[len("sqlite://") :]).snapshot().allocations == ()


def test_release_one_owner_of_a_shared_level(capsys: pytest.CaptureFixture[str], url: str) -> None:
    run(capsys, "reserve", "s0:c1,c2", "--owner", "pod:a", "--shared", "--store", url)
    run(capsys, "reserve", "s0:c1,c2", "--owner", "pod:b", "--store", url)
    code, out, _ = run(capsys, "release", "s0:c1,c2", "--owner", "pod:a", "--store", url)
    assert code == 0 and out == "s0:c1,c2 still held by pod:b\n"
    code, out, _ = run(capsys, "release", "s0:c1,c2", "--owner", "pod:b", "--store", url, "--json")
    assert json.loads(out) == {"level": "s0:c1,c2", "freed": True, "remaining": None}


def test_gc_frees_a_dead_pid(capsys: pytest.CaptureFixture[str], url: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    import socket

    owner = f"pid:{child.pid}@{socket.gethostname()}"
    code, out, _ = run(capsys, "allocate", "--owner", owner, "--store", url)
    level = out.strip()
    code, out, _ = run(capsys, "gc", "--store", url, "--json")
    assert code == 0
    assert json.loads(out) == {
        "events": [{"level": level, "owner": owner, "reason": "process-gone", "freed": True}]
    }
    code, out, _ = run(capsys, "gc", "--store", url)
    assert out == "gc: 0 change(s)\n"


def test_bad_store_urls_and_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "allocate", "--store", "ftp://x")
    assert code == 2 and "unknown store URL" in err
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    code, _, err = run(capsys, "list", "--store", f"sqlite://{junk}")
    assert code == 3 and "not an SQLite database" in err
    assert junk.read_text() == "not a database"
    monkeypatch.setenv("MCSLABEL_STORE", f"sqlite://{tmp_path}/env.db")
    code, _, err = run(capsys, "allocate")
    assert code == 2 and "--create-store" in err and not (tmp_path / "env.db").exists()
    code, _, err = run(capsys, "list")
    assert code == 2 and not (tmp_path / "env.db").exists()
    code, out, _ = run(capsys, "allocate", "--create-store")
    assert code == 0 and (tmp_path / "env.db").exists()
    assert Level.parse(out.strip()).is_pair


def test_categories_flag_bounds_the_space(capsys: pytest.CaptureFixture[str], url: str) -> None:
    seen = set()
    for _ in range(3):
        code, out, _ = run(capsys, "allocate", "--categories", "3", "--store", url)
        assert code == 0
        seen.add(out.strip())
    assert seen == {"s0:c0,c1", "s0:c0,c2", "s0:c1,c2"}
    code, _, err = run(capsys, "allocate", "--categories", "3", "--store", url)
    assert code == 3 and "no free category pair" in err


def test_real_subprocess_allocate_and_release(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "mcslabel"
    env = {**os.environ, "MCSLABEL_STORE": f"sqlite://{tmp_path}/labels.db"}
    done = subprocess.run(
        [str(exe), "allocate", "--owner", "demo", "--create-store"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    level = done.stdout.strip()
    assert Level.parse(level).is_pair
    done = subprocess.run(
        [str(exe), "release", level],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == f"released {level}\n"
    done = subprocess.run(
        [str(exe), "release", level],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert done.returncode == 3 and "is not allocated" in done.stderr


def test_a_lease_beyond_year_9999_is_listed_and_renewed(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    code, out, _ = run(
        capsys, "reserve", "--store", url, "--owner", "o:1", "--ttl", "1e300", "s0:c1,c2"
    )
    assert (code, out.strip()) == (0, "s0:c1,c2")
    code, out, err = run(capsys, "list", "--store", url)
    assert code == 0, err
    assert out.splitlines()[1].split()[:4] == ["s0:c1,c2", "o:1", "-", f"{1e300:.0f}"]
    code, out, err = run(capsys, "renew", "--store", url, "--ttl", "1e299", "s0:c1,c2")
    assert code == 0, err
    assert out.startswith("s0:c1,c2 expires 1") and "T" not in out


def test_list_shows_levels_in_use(capsys: pytest.CaptureFixture[str], url: str) -> None:
    from mcslabel import Allocator, open_store

    with Allocator(open_store(url)) as allocator:
        allocator.record_in_use("s0:c0.c99", "docker:wide")
    code, out, _ = run(capsys, "list", "--store", url)
    assert code == 0 and "s0:c0.c99" in out and "(in use)" in out
    code, out, _ = run(capsys, "list", "--store", url, "--json")
    (record,) = json.loads(out)["allocations"]  # one object, never a bare array
    assert record["in_use"] is True and record["owners"] == ["docker:wide"]
    code, _, err = run(capsys, "allocate", "--store", url, "--categories", "100")
    assert code == 3 and "no free category pair" in err
    assert run(capsys, "release", "s0:c0.c99", "--store", url, "--owner", "docker:wide")[0] == 0
    assert json.loads(run(capsys, "list", "--store", url, "--json")[1]) == {"allocations": []}
