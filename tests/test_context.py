"""Context and ContainerContexts parsing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcslabel.context import ContainerContexts, Context
from mcslabel.errors import InvalidContext, MCSLabelError, PolicyError
from mcslabel.level import Level, LevelRange
from tests.strategies import contexts


def test_parse_and_format() -> None:
    ctx = Context.parse("system_u:object_r:container_file_t:s0:c9,c5")
    assert (ctx.user, ctx.role, ctx.type) == ("system_u", "object_r", "container_file_t")
    assert ctx.level == Level.parse("s0:c5,c9")
    assert str(ctx) == "system_u:object_r:container_file_t:s0:c5,c9"
    assert Context.parse("u:r:t").level is None
    ranged = Context.parse("staff_u:staff_r:staff_t:s0-s0:c0.c1023")
    assert isinstance(ranged.level, LevelRange)
    assert ranged.low == Level.parse("s0")


def test_with_type_and_level() -> None:
    ctx = Context.parse("system_u:object_r:container_file_t:s0")
    assert str(ctx.with_type("container_ro_file_t")) == "system_u:object_r:container_ro_file_t:s0"
    assert str(ctx.with_level("s0:c1,c2")) == "system_u:object_r:container_file_t:s0:c1,c2"
    assert str(ctx.with_level(Level.pair(3, 4))).endswith(":s0:c3,c4")
    assert ctx.with_level(None).level is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("u:r", "at least"),
        ("u::t", "empty role"),
        ("u:r:t:", "context"),
        ("u:r:t:s0:c1024", "out of range"),
        ("u:r:t:SystemLow", "mcstrans"),
        ("u r:r:t", "whitespace"),
        ("u:r:9t", "not a valid SELinux identifier"),
        ("u:r:t$:s0", "not a valid SELinux identifier"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(InvalidContext, match=fragment):
        Context.parse(text)


@given(contexts)
def test_roundtrip(ctx: Context) -> None:
    assert Context.parse(str(ctx)) == ctx


@given(st.text(max_size=80))
def test_parser_raises_only_mcslabel_errors(text: str) -> None:
    with contextlib.suppress(MCSLabelError):
        Context.parse(text)


LXC = """\
# comment line
process = "system_u:system_r:container_t:s0"   # trailing comment
content = "system_u:object_r:virt_var_lib_t:s0"
file = "system_u:object_r:container_file_t:s0" ; semicolon comment
ro_file='system_u:object_r:container_ro_file_t:s0'
   sandbox_kvm_process = system_u:system_r:svirt_qemu_net_t:s0
unknown_key = "system_u:object_r:foo_t:s0"

"""


def test_container_contexts_parse() -> None:
    cc = ContainerContexts.parse(LXC)
    assert cc.process.type == "container_t"
    assert cc.file.type == "container_file_t"
    assert cc.read_only_file.type == "container_ro_file_t"
    assert cc.kvm_process.type == "svirt_qemu_net_t"
    assert cc.init_process == cc.process  # falls back: no sandbox_lxc_process
    assert cc.extra["unknown_key"].type == "foo_t"


def test_container_contexts_fallbacks() -> None:
    cc = ContainerContexts.parse('process="u:r:a_t:s0"\nfile="u:object_r:b_t:s0"\n')
    assert cc.read_only_file == cc.file
    assert cc.kvm_process == cc.process


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('file = "u:r:t:s0"\n', "no 'process' entry"),
        ('process = "u:r:t:s0"\n', "no 'file' entry"),
        ('process "u:r:t:s0"\n', "expected"),
        ('process = "u:r"\nfile = "u:r:t"\n', ":1:"),
    ],
)
def test_container_contexts_errors(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        ContainerContexts.parse(text)


def test_a_degenerate_range_is_the_level_like_the_kernel_says() -> None:
    ranged = Context.parse("system_u:object_r:container_file_t:s0:c1,c2-s0:c1,c2")
    plain = Context.parse("system_u:object_r:container_file_t:s0:c1,c2")
    assert ranged == plain and hash(ranged) == hash(plain)
    assert str(ranged) == "system_u:object_r:container_file_t:s0:c1,c2"
    assert str(Context.parse("u:r:t:s0:c1,c1")) == "u:r:t:s0:c1"
