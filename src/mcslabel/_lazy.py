"""Lazy package front doors: a public name is imported from its module on first access.

The front door and the job packages export their public names this way, so
that importing a package costs nothing until a name is used (the relabel and
restore commands load only the modules they run).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of *package*.

    *names* maps each public name to the module that defines it; *namespace*
    is the package's ``globals()``, where a resolved name is cached so that
    later lookups skip ``__getattr__``.
    """

    def module_getattr(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def module_dir() -> list[str]:
        return sorted(set(namespace) | set(names))

    return module_getattr, module_dir
