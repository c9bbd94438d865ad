"""Branch names as NanoAOD groups them, and the name filter of the branch views.

NanoAOD names a collection ``Jet`` by a counter ``nJet`` and its columns
``Jet_pt``, ``Jet_eta``...; trigger and filter bits share a prefix (``HLT_``,
``Flag_``, ``L1_``). Grouping by the prefix before the first ``_`` (or ``.``
in RNTuple field paths) puts a thousand NanoAOD branches into a few dozen
groups that a view can fold.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

__all__ = ["filter_names", "group_names", "group_of", "no_match_hint"]

_GLOB = set("*?[")
_SEPARATOR = re.compile(r"[_.]")


def __dir__() -> list[str]:
    return __all__


def group_of(name: str, prefixes: set[str]) -> str:
    """The group of a branch: its prefix (``Jet`` for ``Jet_pt``), ``Jet`` for ``nJet``, else ""."""
    if name.startswith("n") and name[1:] in prefixes:
        return name[1:]
    head = _SEPARATOR.split(name, maxsplit=1)
    return head[0] if len(head) == 2 and head[0] else ""


def group_names(names: Iterable[str]) -> dict[str, list[str]]:
    """``{group: names}`` in order of first appearance; "" holds the names of no group.

    A prefix shared by a single name is no group: that name goes to "".
    """
    names = list(names)
    prefixes = {_SEPARATOR.split(n, maxsplit=1)[0] for n in names if _SEPARATOR.search(n)}
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(group_of(name, prefixes), []).append(name)
    alone = [g for g, members in groups.items() if g and len(members) == 1]
    if alone:
        singles = {members[0] for g, members in groups.items() if g in alone}
        groups = {g: m for g, m in groups.items() if g not in alone}
        groups[""] = [n for n in names if n in singles or n in groups.get("", [])]
    return groups


def filter_names(names: Sequence[str], pattern: str, groups: Iterable[str] = ()) -> list[str]:
    """The names a filter lets through, with the API's semantics (``branches=``).

    A glob (``Jet_*``, ``*_pt``) matches whole names, case-sensitively as ROOT
    names are; text without a wildcard is an exact name, or the name of a group
    (``Jet`` gives ``nJet`` and ``Jet_*``). An empty filter lets everything through.
    """
    pattern = pattern.strip()
    if not pattern:
        return list(names)
    if _GLOB & set(pattern):
        return [name for name in names if fnmatch.fnmatchcase(name, pattern)]
    if pattern in set(groups):
        prefixes = {pattern}
        return [name for name in names if group_of(name, prefixes) == pattern]
    return [name for name in names if name == pattern]


def no_match_hint(names: Sequence[str], pattern: str) -> str:
    """Why a filter shows nothing, and what would show something."""
    pattern = pattern.strip()
    text = f"nothing matches {pattern!r}"
    same = [name for name in names if name.lower() == pattern.lower()]
    if same:
        return f"{text}; names are case-sensitive: did you mean {same[0]!r}?"
    if not _GLOB & set(pattern):
        text += " (without * or ? a filter is a whole name)"
    core = pattern.strip("*?")
    near = [name for name in names if core and core.lower() in name.lower()]
    if near:
        shown = ", ".join(near[:3]) + (", ..." if len(near) > 3 else "")
        at = near[0].lower().index(core.lower())
        spelled = near[0][at : at + len(core)]  # as the names spell it
        text += f"; {len(near)} name(s) contain {spelled!r} ({shown}): try *{spelled}*"
    return text
