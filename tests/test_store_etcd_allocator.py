"""The shared allocator suite (tests/test_allocator.py), re-run with an EtcdStore.

Every test there that takes the ``store`` fixture runs here once more, against a fresh prefix
on the real 3-member cluster: the allocator's guarantees (no duplicates, dominance safety,
SpaceExhausted, deterministic names, leases, gc) must hold on etcd exactly as on SQLite.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest

from mcslabel.allocation.stores import open_store
from mcslabel.allocation.stores.base import Store
from tests import test_allocator as shared
from tests.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.etcd


@pytest.fixture
def store(etcd_cluster: EtcdCluster, etcd_prefix: str) -> Iterator[Store]:
    made = open_store(etcd_cluster.url(etcd_prefix))
    yield made
    made.close()


for _name, _test in inspect.getmembers(shared, inspect.isfunction):
    if _name.startswith("test_") and "store" in inspect.signature(_test).parameters:
        globals()[_name] = _test
