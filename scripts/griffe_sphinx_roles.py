"""A griffe extension for ``make docs``: Sphinx roles in docstrings become links.

The docstrings use Sphinx's cross-reference roles (``:func:`relabel```,
``:class:`~mcslabel.errors.RefusedPath```), which mkdocstrings renders as
literal text. This rewrites each role into an mkdocs-autorefs reference
once the package is loaded: the name is resolved in the docstring's own
scope (as Sphinx does), ``~`` keeps only its last component, and the link is
*optional*, so a name the reference pages do not render (a private module)
shows as code instead of failing ``mkdocs --strict``. Names that do not
resolve stay code. Docstrings in the source are left as they are.

Configured in mkdocs.yml (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(
    r":(?:py:)?(?P<role>func|class|meth|mod|data|attr|exc|obj|const):"
    r"`(?P<tilde>~)?(?P<text>[^`<]+?)(?:\s*<(?P<target>[^>`]+)>)?`"
)
_CALLABLE = {"func", "meth"}


def _resolve(obj: griffe.Object, name: str, collection: Any) -> str | None:
    """The full path ``name`` means in ``obj``'s scope, if it exists."""
    candidates = [name]
    first, _, rest = name.partition(".")
    try:
        base = obj.resolve(first)
    except Exception:  # griffe.NameResolutionError and friends: not in scope
        base = None
    if base:
        candidates.insert(0, f"{base}.{rest}" if rest else base)
    for full in candidates:
        try:
            collection[full]
        except Exception:  # KeyError, AliasResolutionError: not a loaded object
            continue
        return full
    return None


def rewrite(text: str, obj: griffe.Object, collection: Any) -> str:
    """``text`` with every Sphinx role replaced by an optional autorefs link."""

    def replace(match: re.Match[str]) -> str:
        target = (match["target"] or match["text"]).strip().removesuffix("()")
        shown = match["text"].strip() if match["target"] else target
        if match["tilde"]:
            shown = shown.rsplit(".", 1)[-1]
        if match["role"] in _CALLABLE and not match["target"]:
            shown += "()"
        full = _resolve(obj, target, collection)
        code = f"<code>{html.escape(shown)}</code>"
        if full is None:
            return code
        return f'<autoref identifier="{html.escape(full)}" optional>{code}</autoref>'

    return ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the loaded package."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        self._walk(pkg, loader.modules_collection, set())

    def _walk(self, obj: griffe.Object, collection: Any, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = rewrite(obj.docstring.value, obj, collection)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, collection, seen)  # type: ignore[arg-type]
