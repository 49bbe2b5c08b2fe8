"""EtcdStore against a real 3-member etcd cluster on loopback (Debian etcd-server 3.4).

Nothing here is faked: every test talks to real etcd members started by
``scripts/etcd-cluster.sh`` (see tests/etcd_cluster.py); the multi-host tests run real
processes, each acting as one host.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcslabel.allocation.allocator import Allocator, pair_count
from mcslabel.allocation.stores import open_store
from mcslabel.allocation.stores.base import Allocation, InsertOutcome
from mcslabel.allocation.stores.etcd import EtcdStore, parse_url
from mcslabel.allocation.stores.memory import MemoryStore
from mcslabel.errors import (
    DominanceConflict,
    InvalidInput,
    LabelInUse,
    SpaceExhausted,
    StoreCorrupt,
    StoreError,
    StoreOutcomeUnknown,
    StoreUnavailable,
)
from mcslabel.level import Level
from tests.etcd_cluster import REPO, EtcdCluster, _cluster_dir, make_tls_dir, start_cluster

pytestmark = pytest.mark.etcd


def record(a: int, b: int, owner: str = "o", **fields: object) -> Allocation:
    return Allocation(level=Level.pair(a, b), owners=(owner,), created=1.0, **fields)  # type: ignore[arg-type]


@pytest.fixture
def store(etcd_cluster: EtcdCluster, etcd_prefix: str) -> Iterator[EtcdStore]:
    opened = open_store(etcd_cluster.url(etcd_prefix))
    assert isinstance(opened, EtcdStore)
    yield opened
    opened.close()


def raw_client(cluster: EtcdCluster):  # type: ignore[no-untyped-def]
    import etcd3gw

    host, port = cluster.endpoints[0].split(":")
    return etcd3gw.client(host=host, port=int(port), timeout=5, api_path="/v3/")


def assert_feed_caught_up(store: EtcdStore) -> None:
    """The store's watch feed has delivered the store's own last write (white-box)."""
    deadline = time.monotonic() + 5
    while store._feed is None or store._feed._seen < store._last_write:
        assert time.monotonic() < deadline, "the change feed never caught up"
        time.sleep(0.05)


def run_hosts(
    url: str, mode: str, hosts: list[str], categories: int, count: int
) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'src'}"}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests.etcd_host", mode, url, h, str(categories), str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        for h in hosts
    ]


def results(procs: list[subprocess.Popen[str]], timeout: float = 120) -> list[dict[str, list[str]]]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


# --- URL parsing (no cluster needed) -------------------------------------------------


def test_url_parses_endpoints_prefix_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCSLABEL_ETCD_PASSWORD", raising=False)
    config = parse_url("etcd://h1:2380,h2,[::1]:2381/clusters/a?timeout=2.5&lease_ttl=30&host=n1")
    assert config.endpoints == (("h1", 2380), ("h2", 2379), ("::1", 2381))
    assert config.prefix == "/clusters/a"
    assert (config.timeout, config.lease_ttl, config.host, config.tls) == (2.5, 30, "n1", False)
    assert parse_url(config.url()) == config
    assert parse_url("etcd://h1").prefix == "/mcslabel"


def test_url_tls_and_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCSLABEL_ETCD_PASSWORD", raising=False)
    assert parse_url("etcds://h1/p").tls
    config = parse_url("etcd://h1/p?ca=/etc/ca.pem&cert=/c.pem&key=/k.pem")
    assert (config.tls, config.ca, config.cert, config.key) == (
        True,
        "/etc/ca.pem",
        "/c.pem",
        "/k.pem",
    )
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    config = parse_url(f"etcd://h1/p?user=alice&password_file={secret}")
    assert (config.user, config.password) == ("alice", "s3cret")
    assert "s3cret" not in config.url() and "s3cret" not in repr(config)
    monkeypatch.setenv("MCSLABEL_ETCD_PASSWORD", "fromenv")
    assert parse_url("etcd://bob@h1/p").password == "fromenv"


@pytest.mark.parametrize(
    "url",
    [
        "etcd:///p",  # no endpoint
        "etcd://h1:99999/p",
        "etcd://h1:x/p",
        "etcd://h1/p?colour=blue",
        "etcd://h1/p?timeout=soon",
        "etcd://h1/p?timeout=0",
        "etcd://h1/p?lease_ttl=1",
        "etcd://h1/p?cert=/c.pem",
        "etcd://h1/a b",
        "etcd://h1/p?keepalive=maybe",
        "etcd://:pw@h1/p",
        "http://h1/p",
    ],
)
def test_bad_urls_are_invalid_input(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCSLABEL_ETCD_PASSWORD", raising=False)
    with pytest.raises(InvalidInput):
        open_store(url) if url.startswith("http") else parse_url(url)


class _NotEtcd(http.server.BaseHTTPRequestHandler):
    """A real HTTP server that is not etcd: answers every POST 200 with ``server.body``."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body: bytes = self.server.body  # type: ignore[attr-defined]
        declared: int = getattr(self.server, "declared", len(body))
        self.send_response(200)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("body", [b"<html>hello</html>", b"{}", b"[]", b'{"token": 1}'])
def test_a_server_that_is_not_etcd_gives_store_unavailable(body: bytes) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotEtcd)
    server.body = body  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for url in (f"etcd://127.0.0.1:{port}/p", f"etcd://u:pw@127.0.0.1:{port}/p"):
            store = EtcdStore.from_url(f"{url}?timeout=2")
            allocator = Allocator(store, categories=8, exclude=(), host="local")
            with pytest.raises(StoreUnavailable, match="not an etcd v3 gateway"):
                allocator.allocate("o")
            with pytest.raises(StoreUnavailable, match="not an etcd v3 gateway"):
                store.snapshot()
            store.close()
    finally:
        server.shutdown()
        server.server_close()


def test_a_reply_cut_short_is_outcome_unknown_not_a_raw_requests_error() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotEtcd)
    server.body, server.declared = b'{"hea', 100  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store = EtcdStore.from_url(f"etcd://127.0.0.1:{server.server_address[1]}/p?timeout=1")
    try:
        # The request reached a server that then broke off: it may have been applied.
        with pytest.raises(StoreOutcomeUnknown, match="IncompleteRead"):
            store.snapshot()
    finally:
        store.close()
        server.shutdown()
        server.server_close()


# --- the store contract on a real cluster ---------------------------------------------


def test_insert_outcomes_and_precedence(store: EtcdStore) -> None:
    gen = store.snapshot().generation
    assert store.insert(record(1, 2, name="n"), generation=gen).outcome is InsertOutcome.INSERTED
    # the level key wins over the name, which wins over the generation
    assert (
        store.insert(record(1, 2, name="n"), generation=gen + 99).outcome is InsertOutcome.KEY_HELD
    )
    assert (
        store.insert(record(1, 3, name="n"), generation=gen + 99).outcome is InsertOutcome.NAME_HELD
    )
    assert store.insert(record(1, 3), generation=gen + 99).outcome is InsertOutcome.GENERATION_MOVED
    assert store.get(Level.pair(1, 3)) is None
    held = store.get(Level.pair(1, 2))
    assert held is not None and held.name == "n" and held.revision > 0


def test_unconfirmed_insert_is_withdrawn_only_if_it_is_ours(store: EtcdStore) -> None:
    # The late commit of a timed-out insert cannot be forced on cue, so this drives the
    # withdrawal directly: the store remembers what it sent (as after StoreOutcomeUnknown)
    # and its next successful call deletes that record, and only that exact record.
    gen = store.snapshot().generation
    ours, theirs = record(1, 2, name="late"), record(3, 4, owner="other-host")
    sent = store._value(ours)  # each write carries a unique id: keep the one sent
    assert store._insert(ours, sent, gen).outcome is InsertOutcome.INSERTED
    assert store.insert(theirs, generation=gen).outcome is InsertOutcome.INSERTED
    store._unconfirmed.append((ours, sent))
    # A level someone else holds is never withdrawn: the value sent differs.
    store._unconfirmed.append((theirs, store._value(record(3, 4, owner="me"))))
    held = {str(a.level): a.owners for a in store.snapshot().allocations}
    assert held == {"s0:c3,c4": ("other-host",)}
    assert store.get(Level.pair(1, 2)) is None
    assert not store._unconfirmed
    # the name is free again too
    assert store.insert(record(5, 6, name="late"), generation=gen).outcome is InsertOutcome.INSERTED


def test_changes_report_puts_and_deletes(store: EtcdStore) -> None:
    start = store.snapshot()
    store.insert(record(1, 2), generation=start.generation)
    store.insert(record(3, 4), generation=start.generation)
    first = store.changes(start.revision)
    assert first is not None and set(first.changed) == {"s0:c1,c2", "s0:c3,c4"}
    held = store.get(Level.pair(1, 2))
    assert held is not None and store.delete(held)
    second = store.changes(first.revision)
    assert second is not None and second.changed == {"s0:c1,c2": None}
    # re-inserted after deletion: the record, not the tombstone, is current
    store.insert(record(1, 2, "again"), generation=start.generation)
    third = store.changes(first.revision)
    assert third is not None
    again = third.changed["s0:c1,c2"]
    assert again is not None and again.owners == ("again",)
    assert store.changes(third.revision) == attrs.evolve(third, changed={})


def test_replace_and_delete_are_compare_and_swap(store: EtcdStore) -> None:
    store.insert(record(1, 2, name="a", shared=True), generation=0)
    store.insert(record(3, 4, name="b"), generation=0)
    current = store.get(Level.pair(1, 2))
    assert current is not None
    joined = attrs.evolve(current, owners=("o", "p"))
    assert store.replace(current, joined)
    assert not store.replace(current, joined), "stale revision must lose"
    latest = store.get(Level.pair(1, 2))
    assert latest is not None and latest.owners == ("o", "p")
    # renaming onto another level's name is refused; a free name is taken over
    assert not store.replace(latest, attrs.evolve(latest, name="b"))
    assert store.replace(latest, attrs.evolve(latest, name="c"))
    assert store.insert(record(5, 6, name="a"), generation=0).outcome is InsertOutcome.INSERTED
    with pytest.raises(InvalidInput):
        store.replace(latest, attrs.evolve(latest, level=Level.pair(7, 8)))
    assert not store.delete(latest), "stale revision must not delete"
    newest = store.get(Level.pair(1, 2))
    assert newest is not None and store.delete(newest)
    assert store.get(Level.pair(1, 2)) is None
    assert store.insert(record(9, 10, name="c"), generation=0).outcome is InsertOutcome.INSERTED


def test_insert_custom_checks_everything_and_moves_generation(store: EtcdStore) -> None:
    store.insert(record(1, 2), generation=0)
    before = store.snapshot()
    seen: list[list[str]] = []

    def refuse(held: Iterable[Allocation]) -> None:
        seen.append([str(a.level) for a in held])
        raise DominanceConflict("no")

    custom = Allocation(level=Level.parse("s0:c1"), owners=("x",), created=1.0, custom=True)
    with pytest.raises(DominanceConflict):
        store.insert_custom(custom, refuse)
    assert seen == [["s0:c1,c2"]]
    # refused on what was already held: nothing written, not even the lock
    assert store.snapshot().revision == before.revision
    assert store.insert_custom(custom, lambda held: None).outcome is InsertOutcome.INSERTED
    after = store.snapshot()
    assert after.generation > before.generation
    assert store.insert(record(5, 6), generation=before.generation).outcome is (
        InsertOutcome.GENERATION_MOVED
    )
    assert store.insert(record(5, 6), generation=after.generation).outcome is InsertOutcome.INSERTED
    assert store.insert_custom(custom, lambda held: None).outcome is InsertOutcome.KEY_HELD


def test_insert_custom_rechecks_what_appeared_before_the_lock(
    store: EtcdStore, etcd_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    """A pair committed by another host between the first check and the lock is checked."""
    other_host = EtcdStore.from_url(etcd_cluster.url(etcd_prefix))
    checks: list[list[str]] = []

    def check(held: Iterable[Allocation]) -> None:
        checks.append(sorted(str(a.level) for a in held))
        if len(checks) == 1:  # between the two reads, another host takes s0:c3,c4
            assert other_host.insert(record(3, 4), generation=0).outcome is InsertOutcome.INSERTED
        elif "s0:c3,c4" in checks[-1]:
            raise DominanceConflict("s0:c3 is dominated by s0:c3,c4")

    custom = Allocation(level=Level.parse("s0:c3"), owners=("x",), created=1.0, custom=True)
    with pytest.raises(DominanceConflict):
        store.insert_custom(custom, check)
    assert checks == [[], ["s0:c3,c4"]]
    assert store.get(custom.level) is None
    # the lock was released: a pair insert at the current generation goes through
    generation = store.snapshot().generation
    assert store.insert(record(5, 6), generation=generation).outcome is InsertOutcome.INSERTED
    other_host.close()


def test_damaged_record_is_store_corrupt(store: EtcdStore, etcd_cluster: EtcdCluster) -> None:
    raw_client(etcd_cluster).put(f"{store.config.prefix}/levels/s0:c1,c2", "{not json")
    with pytest.raises(StoreCorrupt):
        store.get(Level.pair(1, 2))
    with pytest.raises(StoreCorrupt):
        store.snapshot()


operations = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "join"]),
        st.integers(0, 5),
        st.sampled_from(["a", "b", "c", None]),
    ),
    max_size=12,
)


@settings(max_examples=15)
@given(ops=operations)
def test_same_observable_behaviour_as_memory_store(
    etcd_cluster: EtcdCluster, ops: list[tuple[str, int, str | None]]
) -> None:
    """Any sequence of writes gives the same outcomes and state as the in-memory model."""
    import uuid

    etcd = EtcdStore.from_url(etcd_cluster.url(f"prop-{uuid.uuid4().hex[:10]}"))
    model = MemoryStore()
    try:
        start = etcd.snapshot().revision
        for op, pair, name in ops:
            level = Level.pair(pair, pair + 1)
            results_ = []
            for s in (etcd, model):
                current = s.get(level)
                if op == "insert":
                    new = record(pair, pair + 1, name=name, shared=True)
                    results_.append(s.insert(new, generation=s.snapshot().generation).outcome)
                elif current is None:
                    results_.append(None)
                elif op == "delete":
                    results_.append(s.delete(current))
                else:
                    joined = attrs.evolve(current, owners=(*current.owners, "z"), name=name)
                    results_.append(s.replace(current, joined))
            assert results_[0] == results_[1], (op, pair, name)
        assert set(etcd.snapshot().allocations) == set(model.snapshot().allocations)
        changes = etcd.changes(start)
        assert changes is not None
        live = {k: v for k, v in changes.changed.items() if v is not None}
        assert set(live.values()) == set(etcd.snapshot().allocations)
    finally:
        etcd.close()


# --- the shared allocator over etcd ---------------------------------------------------


def test_allocator_dominance_exhaustion_and_names(
    etcd_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    url = etcd_cluster.url(etcd_prefix)
    host_a = Allocator(open_store(url), categories=6, exclude=(), host="a")
    host_b = Allocator(open_store(url), categories=6, exclude=(), host="b")
    # a custom level on one host blocks every comparable pair on the other
    custom = host_a.reserve("s0:c0", "special")
    with pytest.raises(DominanceConflict):
        host_b.reserve("s0:c0,c3", "other")
    with pytest.raises(LabelInUse):
        host_b.reserve(str(custom.level), "other")
    # deterministic names: both hosts get the same level for one name
    named = host_a.allocate("pod:1", name="web")
    assert host_b.allocate("pod:2", name="web").level == named.level
    assert 0 not in named.level.categories
    # fill the space from both hosts: no pair twice, then SpaceExhausted on both
    free = pair_count(6) - 5 - 1  # the 5 pairs containing c0 and the named pair
    got = [host_a.allocate(f"c:{i}") if i % 2 else host_b.allocate(f"c:{i}") for i in range(free)]
    levels = [str(a.level) for a in got]
    assert len(set(levels)) == free
    assert all(0 not in a.level.categories for a in got), "custom s0:c0 must block its pairs"
    for allocator in (host_a, host_b):
        with pytest.raises(SpaceExhausted):
            allocator.allocate("one-too-many")
    # a release on one host is seen by the other
    host_a.release(levels[0])
    assert str(host_b.allocate("late").level) == levels[0]


# --- several hosts, member failure, cluster failure -------------------------------


def test_concurrent_hosts_never_duplicate(etcd_cluster: EtcdCluster, etcd_prefix: str) -> None:
    url = etcd_cluster.url(etcd_prefix)
    categories, per_host, hosts = 14, 20, ["h1", "h2", "h3", "h4"]  # 80 of 91 pairs
    outputs = results(run_hosts(url, "allocate", hosts, categories, per_host))
    levels = [level for out in outputs for level in out["levels"]]
    assert [out["errors"] for out in outputs] == [[]] * len(hosts)
    duplicates = [level for level, n in Counter(levels).items() if n > 1]
    assert duplicates == [] and len(levels) == per_host * len(hosts)
    stored = open_store(url).snapshot().allocations
    assert sorted(str(a.level) for a in stored) == sorted(levels)
    assert {a.host for a in stored} == set(hosts)


@pytest.mark.slow
def test_member_killed_mid_run_allocation_continues(private_etcd_cluster: EtcdCluster) -> None:
    cluster = private_etcd_cluster
    url = cluster.url("kill", timeout=4)
    store = EtcdStore.from_url(url)
    allocator = Allocator(store, categories=20, exclude=(), host="local")
    allocator.allocate("before")
    procs = run_hosts(url, "allocate", ["h1", "h2", "h3"], 20, 40)
    used = store._members._current  # the member this process talks to: kill exactly that one
    time.sleep(0.5)
    cluster.kill_member(used)
    mine = [str(allocator.allocate(f"after:{i}").level) for i in range(10)]
    assert store._members._current != used, "the store must have moved to a live member"
    outputs = results(procs)
    assert [out["errors"] for out in outputs] == [[]] * 3
    levels = mine + [level for out in outputs for level in out["levels"]]
    assert len(levels) == len(set(levels)) == 130
    assert "down" in cluster.status()
    health = dict(store.members_status())
    assert health == {ep: ep != cluster.endpoints[used] for ep in cluster.endpoints}
    assert len(store.snapshot().allocations) == 131
    store.close()


@pytest.mark.slow
def test_whole_cluster_down_is_store_unavailable_quickly(private_etcd_cluster: EtcdCluster) -> None:
    cluster = private_etcd_cluster
    store = EtcdStore.from_url(cluster.url("down", timeout=1.5))
    allocator = Allocator(store, categories=8, exclude=(), host="local")
    allocator.allocate("ok")
    # quorum lost: the surviving member answers nothing useful (requests hang server-side)
    cluster.kill_member(0)
    cluster.kill_member(1)
    started = time.monotonic()
    # The surviving member took the proposal: it may commit once quorum returns, so the
    # error says the outcome is unknown (a StoreUnavailable all the same).
    with pytest.raises(StoreOutcomeUnknown, match="no etcd member answered") as unknown:
        allocator.allocate("no-quorum")
    assert "may still be committed" in str(unknown.value)
    assert time.monotonic() - started < 4.0
    # every member gone: connection refused everywhere, same clear error, no local fallback
    cluster.kill_member(2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="no etcd member is reachable"):
        allocator.allocate("nothing")
    with pytest.raises(StoreUnavailable, match="connection refused"):
        store.snapshot()
    assert time.monotonic() - started < 3.0, "refused everywhere must not wait for the timeout"
    # back up: the same store works again, and the allocation it reported as failed is
    # withdrawn (on the first successful call) if etcd committed it after all: nothing leaks.
    for member in range(3):
        cluster.start_member(member)
    deadline = time.monotonic() + 30
    while True:
        try:
            held = store.snapshot().allocations
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert [a.owners for a in held] == [("ok",)]
    # A second client that never saw the failure agrees.
    other = EtcdStore.from_url(cluster.url("down"))
    assert [a.owners for a in other.snapshot().allocations] == [("ok",)]
    other.close()
    store.close()


@pytest.mark.slow
def test_dead_hosts_lease_expires_but_persistent_labels_stay(
    etcd_cluster: EtcdCluster, etcd_prefix: str
) -> None:
    ttl = 2
    url = etcd_cluster.url(etcd_prefix, lease_ttl=ttl)
    (proc,) = run_hosts(url, "hold", ["doomed"], 10, 3)
    assert proc.stdout is not None
    held = json.loads(proc.stdout.readline())
    assert len(held["levels"]) == 3 and len(held["persistent"]) == 1
    observer = EtcdStore.from_url(etcd_cluster.url(etcd_prefix))
    # another host's allocator, synced while the doomed host is alive
    allocator = Allocator(observer, categories=10, exclude=(), host="survivor")
    allocator.sync()
    assert allocator.free_pairs == pair_count(10) - 4
    try:
        # alive and kept alive past several TTLs: nothing expires
        time.sleep(3 * ttl)
        live = {str(a.level) for a in observer.snapshot().allocations}
        assert live == set(held["levels"] + held["persistent"])
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 4 * ttl
        while {str(a.level) for a in observer.snapshot().allocations} != set(held["persistent"]):
            assert time.monotonic() < deadline, "the dead host's lease never expired"
            time.sleep(0.2)
        # the survivor's incremental sync sees them free: expiry leaves no tombstone, so
        # this is the watch feed at work, not a range read. The feed may trail the range
        # read above by a moment (it is late, never wrong): give it a bounded while.
        deadline = time.monotonic() + 10
        allocator.sync()
        while allocator.free_pairs != pair_count(10) - 1:
            assert time.monotonic() < deadline, (
                f"watch feed never freed them: {allocator.free_pairs}"
            )
            time.sleep(0.1)
            allocator.sync()
        # the volume's label was not lease-bound
        kv = raw_client(etcd_cluster).get(
            f"{observer.config.prefix}/levels/{held['persistent'][0]}", metadata=True
        )
        assert "lease" not in kv[0][1]
    finally:
        observer.close()
        if proc.poll() is None:
            proc.kill()


def test_processes_of_one_host_share_one_lease(etcd_cluster: EtcdCluster, etcd_prefix: str) -> None:
    url = etcd_cluster.url(etcd_prefix, lease_ttl=30, host="shared-host")
    first, second = EtcdStore.from_url(url), EtcdStore.from_url(url)
    try:
        assert first.host_lease() == second.host_lease() is not None
        other = EtcdStore.from_url(etcd_cluster.url(etcd_prefix, lease_ttl=30, host="other"))
        assert other.host_lease() != first.host_lease()
        other.close()
        # once that lease is gone (host dead), the next write settles a new one
        raw_client(etcd_cluster).post(
            raw_client(etcd_cluster).get_url("/kv/lease/revoke"), json={"ID": first.host_lease()}
        )
        assert second.insert(record(1, 2), generation=0).outcome is InsertOutcome.INSERTED
        assert second.host_lease() != first._lease
    finally:
        first.close()
        second.close()


@pytest.mark.slow
def test_auth_user_password(private_etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    cluster = private_etcd_cluster
    env = {**os.environ, "ETCDCTL_API": "3"}
    eps = ",".join(cluster.endpoints)
    for args in (["user", "add", "root:rootpw"], ["auth", "enable"]):
        subprocess.run(["etcdctl", f"--endpoints={eps}", *args], env=env, check=True, timeout=30)
    password = tmp_path / "pw"
    password.write_text("rootpw\n")
    store = EtcdStore.from_url(cluster.url("auth", user="root", password_file=str(password)))
    allocator = Allocator(store, categories=8, exclude=(), host="authed")
    first = allocator.allocate("a")
    assert store.get(first.level) == first
    allocator.allocate("b")
    assert_feed_caught_up(store)  # the watch feed authenticated too
    assert len(store.snapshot().allocations) == 2
    store.close()
    password.write_text("wrong\n")
    wrong = EtcdStore.from_url(cluster.url("auth", user="root", password_file=str(password)))
    with pytest.raises(StoreError, match="refused user") as caught:
        wrong.snapshot()
    assert not isinstance(caught.value, StoreUnavailable)
    anonymous = EtcdStore.from_url(cluster.url("auth"))
    with pytest.raises(StoreError):
        anonymous.snapshot()


@pytest.mark.slow
def test_tls_with_client_certificates(tmp_path: Path) -> None:
    """etcds:// against members that serve https and require a client certificate."""
    tls = make_tls_dir(tmp_path / "tls")
    cluster = start_cluster(_cluster_dir(), tls=tls)
    try:
        files = {"ca": str(tls / "ca.pem"), "cert": str(tls / "client.pem")}
        files["key"] = str(tls / "client-key.pem")
        store = EtcdStore.from_url(cluster.url("tls", **files))
        assert store.config.tls and store.url.startswith("etcds://")
        allocator = Allocator(store, categories=8, exclude=(), host="tls")
        held = allocator.allocate("a")
        assert store.get(held.level) == held
        assert_feed_caught_up(store)  # the watch stream runs over TLS too
        store.close()
        # no client certificate: refused at the handshake, a clear error, nothing allocated
        no_cert = EtcdStore.from_url(cluster.url("tls", ca=files["ca"], timeout=2))
        with pytest.raises(StoreUnavailable, match="TLS"):
            no_cert.snapshot()
        # the server's certificate is not trusted without ca=
        untrusted = EtcdStore.from_url(
            cluster.url("tls", cert=files["cert"], key=files["key"], timeout=2)
        )
        with pytest.raises(StoreUnavailable, match="not trusted"):
            untrusted.snapshot()
        # plain http to a TLS member is no way around it
        plain = EtcdStore.from_url(cluster.url("tls", timeout=2).replace("etcds", "etcd"))
        with pytest.raises(StoreError):
            plain.snapshot()
    finally:
        cluster.stop()
