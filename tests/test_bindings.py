"""The OS bindings: found here, and a clear error naming the packages when not.

The bindings are installed on this machine, so "missing" and "the PyPI
look-alike" are simulated by shadowing the module in sys.modules.
"""

from __future__ import annotations

import sys
import types

import pytest

from mcslabel.errors import SELinuxUnavailable
from mcslabel.verification import _bindings


def test_real_bindings_load() -> None:
    assert hasattr(_bindings.setools(), "TERuleQuery")
    assert hasattr(_bindings.selinux(), "getfilecon")
    assert hasattr(_bindings.audit2why(), "analyze")


def test_missing_module_names_os_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "setools", None)
    with pytest.raises(SELinuxUnavailable) as info:
        _bindings.setools()
    message = str(info.value)
    assert "python3-setools" in message and "python3-libselinux" in message
    assert "--system-site-packages" in message


def test_pypi_lookalike_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "setools", types.ModuleType("setools"))
    with pytest.raises(SELinuxUnavailable, match="PyPI package"):
        _bindings.setools()


def test_policy_load_reports_missing_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    from mcslabel.verification.policy import clear_policy_cache, load_policy

    clear_policy_cache()
    monkeypatch.setitem(sys.modules, "setools", None)
    with pytest.raises(SELinuxUnavailable):
        load_policy(policy="/etc/selinux/default/policy/policy.33")
    clear_policy_cache()
