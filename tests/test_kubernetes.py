"""``mcslabel kube security-context``, read back by the Kubernetes API's own models."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client import ApiClient, V1Pod, V1PodSecurityContext, V1SELinuxOptions

from mcslabel.cli import main
from mcslabel.context import Context
from mcslabel.errors import InvalidInput, InvalidLevel
from mcslabel.integrations.kubernetes import (
    SELinuxOptions,
    namespace_allocation_name,
    selinux_options,
    to_yaml,
)
from tests.etcd_cluster import EtcdCluster


class _Response:
    """What ApiClient.deserialize reads: the body of an API server's answer."""

    def __init__(self, body: object) -> None:
        self.data = json.dumps(body)


def _pod(security_context: dict[str, Any], container_context: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "billing", "namespace": "team-a"},
        "spec": {
            "securityContext": security_context,
            "containers": [
                {"name": "app", "image": "busybox", "securityContext": container_context}
            ],
        },
    }


def _round_trip(body: dict[str, Any]) -> tuple[V1Pod, dict[str, Any]]:
    client = ApiClient()
    if "content_type" in inspect.signature(client.deserialize).parameters:  # client >= 35
        pod = client.deserialize(json.dumps(body), "V1Pod", "application/json")
    else:
        pod = client.deserialize(_Response(body), "V1Pod")
    return pod, client.sanitize_for_serialization(pod)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["kube", "security-context", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_emitted_context_reads_back_unchanged_through_the_api_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _cli(capsys, "--level", "s0:c700,c12")
    assert code == 0
    emitted = json.loads(out)
    assert emitted == {
        "seLinuxOptions": {
            "user": "system_u",
            "role": "system_r",
            "type": "container_t",
            "level": "s0:c12,c700",
        }
    }
    pod, back = _round_trip(_pod(emitted, emitted))
    assert isinstance(pod.spec.security_context, V1PodSecurityContext)
    options = pod.spec.security_context.se_linux_options
    assert isinstance(options, V1SELinuxOptions)
    assert (options.user, options.role, options.type, options.level) == (
        "system_u",
        "system_r",
        "container_t",
        "s0:c12,c700",
    )
    assert back["spec"]["securityContext"] == emitted
    assert back["spec"]["containers"][0]["securityContext"] == emitted


def test_yaml_output_is_the_same_object(capsys: pytest.CaptureFixture[str]) -> None:
    _, as_json, _ = _cli(capsys, "--level", "s0:c1,c2")
    code, as_yaml, _ = _cli(capsys, "--level", "s0:c1,c2", "-o", "yaml")
    assert code == 0
    loaded = yaml.safe_load(as_yaml)
    assert loaded == json.loads(as_json)
    _, back = _round_trip(_pod(loaded, {}))
    assert back["spec"]["securityContext"] == loaded


def test_level_only_and_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _cli(capsys, "--level", "s0:c3,c4", "--level-only")
    assert json.loads(out) == {"seLinuxOptions": {"level": "s0:c3,c4"}}
    _, out, _ = _cli(capsys, "--level", "s0:c3,c4", "--type", "spc_t", "--user", "unconfined_u")
    assert json.loads(out)["seLinuxOptions"] == {
        "user": "unconfined_u",
        "role": "system_r",
        "type": "spc_t",
        "level": "s0:c3,c4",
    }


def test_user_role_type_from_a_policy_roots_lxc_contexts(
    centos_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = _cli(capsys, "--level", "s0:c3,c4", "--policy-root", str(centos_root))
    assert json.loads(out)["seLinuxOptions"]["type"] == "container_t"
    (tmp_path / "contexts").mkdir()
    (tmp_path / "contexts" / "lxc_contexts").write_text(
        'process = "other_u:other_r:other_t:s0"\nfile = "system_u:object_r:f_t:s0"\n'
    )
    _, out, _ = _cli(capsys, "--level", "s0:c3,c4", "--policy-root", str(tmp_path))
    assert json.loads(out)["seLinuxOptions"] == {
        "user": "other_u",
        "role": "other_r",
        "type": "other_t",
        "level": "s0:c3,c4",
    }
    # An explicit root that cannot be read is an error, not a silent default.
    code, _, err = _cli(capsys, "--level", "s0:c3,c4", "--policy-root", str(tmp_path / "none"))
    assert code == 2
    assert "not a directory" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--level", "s0-s0:c1"], "range"),
        (["--level", "s0:c1024"], "out of range"),
        (["--level", "SystemLow"], "mcstrans"),
        (["--namespace", "Team_A", "--owner", "o"], "namespace"),
        (["--name", "ns/x", "--store", "memory://"], "--owner"),
        (["--level", "s0:c1,c2", "--type", "bad type"], "identifier"),
    ],
)
def test_bad_input_exits_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, *args)
    assert code == 2, (out, err)
    assert message in err
    assert out == ""


def test_named_allocation_joins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 'labels.db'}"
    refused = _cli(capsys, "--namespace", "team-a", "--owner", "kube:node1", "--store", store)
    assert refused[0] == 2 and "--create-store" in refused[2]
    first = _cli(
        capsys, "--namespace", "team-a", "--owner", "kube:node1", "--store", store, "--create-store"
    )
    again = _cli(capsys, "--name", "ns/team-a", "--owner", "kube:node2", "--store", store)
    other = _cli(capsys, "--namespace", "team-b", "--owner", "kube:node1", "--store", store)
    assert first[0] == again[0] == other[0] == 0
    assert json.loads(first[1]) == json.loads(again[1])
    assert json.loads(first[1]) != json.loads(other[1])
    assert main(["list", "--store", store, "--json"]) == 0
    records = json.loads(capsys.readouterr().out)["allocations"]
    team_a = next(r for r in records if r["name"] == "ns/team-a")
    assert sorted(team_a["owners"]) == ["kube:node1", "kube:node2"]


@pytest.mark.etcd
def test_a_namespace_keeps_its_level_across_nodes_with_etcd(
    etcd_cluster: EtcdCluster, etcd_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = etcd_cluster.url(etcd_prefix)
    # Another workload already holds the pair the name hashes to: the namespace
    # gets the next free one, and every node must still agree on it.
    assert main(["reserve", str(_name_pair("ns/team-a")), "--owner", "other", "--store", url]) == 0
    capsys.readouterr()
    levels = set()
    for node in ("node1", "node2", "node3"):
        code, out, err = _cli(
            capsys, "--namespace", "team-a", "--owner", f"kube:{node}", "--store", url
        )
        assert code == 0, err
        levels.add(json.loads(out)["seLinuxOptions"]["level"])
    assert len(levels) == 1
    assert levels != {str(_name_pair("ns/team-a"))}


def _name_pair(name: str) -> object:
    from mcslabel.allocation.allocator import Allocator
    from mcslabel.allocation.stores import open_store

    return Allocator(open_store("memory://")).name_level(name)


def test_library_calls() -> None:
    assert selinux_options("s0:c2,c1", level_only=True) == {"seLinuxOptions": {"level": "s0:c1,c2"}}
    process = Context.parse("a_u:a_r:a_t:s0")
    assert SELinuxOptions.for_level("s0:c1,c2", process=process).to_json()["type"] == "a_t"
    assert namespace_allocation_name("kube-system") == "ns/kube-system"
    for bad in ["", "-a", "a-", "A", "a.b", "x" * 64]:
        with pytest.raises(InvalidInput):
            namespace_allocation_name(bad)
    with pytest.raises(InvalidLevel):
        SELinuxOptions.for_level("s0-s0:c1")


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=8), _JSONISH, max_size=4))
def test_to_yaml_reads_back_as_the_same_data(data: dict[str, Any]) -> None:
    assert yaml.safe_load(to_yaml(data)) == (data or {})


@pytest.mark.parametrize("word", ["yes", "No", "on", "true", "null", "~", "y", "1", "0x1f", "1e3"])
def test_to_yaml_words_yaml_would_reinterpret_stay_strings(word: str) -> None:
    assert yaml.safe_load(to_yaml({word: word})) == {word: word}
