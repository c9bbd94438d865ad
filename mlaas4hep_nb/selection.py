"""Check a set of files against a branch selection, before anything is read."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import EmptyDataError, SchemaError
from .parallel import map_ordered
from .rootio import Column, cluster_starts, columns, open_tree

__all__ = ["DEFAULT_EXCLUDE", "FileMeta", "scan", "select"]

#: Bookkeeping branches that are never physics features.
DEFAULT_EXCLUDE = ("run", "event", "luminosityBlock")


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class FileMeta:
    """One input file: its path, entries in the tree, columns and cluster boundaries."""

    path: str
    entries: int
    columns: dict[str, Column]
    clusters: tuple[int, ...]


def _meta(path: str, tree: str) -> FileMeta:
    handle = open_tree(path, tree)
    return FileMeta(path, int(handle.num_entries), columns(handle), tuple(cluster_starts(handle)))


def scan(files: Sequence[str], tree: str, max_workers: int = 8) -> list[FileMeta]:
    """Open every file (in parallel, keeping order) and list its tree's columns."""
    return list(map_ordered(lambda path: _meta(path, tree), files, max_workers))


def _is_pattern(name: str) -> bool:
    return any(char in name for char in "*?[")


def _chosen(
    first: FileMeta, branches: Sequence[str] | None, exclude: Sequence[str], tree: str
) -> tuple[list[str], dict[str, str]]:
    """Names picked from the first file, and the unsupported ones left out (with why)."""
    available = list(first.columns)
    excluded = [name for name in available if any(fnmatch.fnmatchcase(name, p) for p in exclude)]
    skipped: dict[str, str] = {}
    if branches is None:
        picked = [name for name in available if name not in excluded]
        for name in list(picked):
            if not first.columns[name].supported:
                skipped[name] = first.columns[name].problem
                picked.remove(name)
        return picked, skipped
    picked = []
    for pattern in branches:
        if not _is_pattern(pattern):
            if pattern not in first.columns:
                msg = f"branch {pattern!r} not in tree {tree!r} of {first.path}"
                raise SchemaError(msg)
            matches = [pattern]
        else:
            matches = [
                n for n in available if fnmatch.fnmatchcase(n, pattern) and n not in excluded
            ]
            if not matches:
                msg = f"no branch of tree {tree!r} in {first.path} matches {pattern!r}"
                raise SchemaError(msg)
        picked.extend(name for name in matches if name not in picked)
    return picked, skipped


def _check_everywhere(metas: Sequence[FileMeta], names: Sequence[str], tree: str) -> None:
    first = metas[0]
    for name in names:
        column = first.columns[name]
        if not column.supported:
            msg = f"branch {name!r} in {first.path} is unsupported: {column.problem}"
            raise SchemaError(msg)
        missing = [meta.path for meta in metas if name not in meta.columns]
        if missing:
            present = len(metas) - len(missing)
            msg = (
                f"branch {name!r} missing in {missing[0]} (tree {tree!r}); "
                f"present in {present} of {len(metas)} files"
            )
            raise SchemaError(msg)
        for meta in metas[1:]:
            other = meta.columns[name]
            if (other.dtype, other.depth) != (column.dtype, column.depth):
                msg = (
                    f"branch {name!r} has type {other.typename} in {meta.path} "
                    f"but {column.typename} in {first.path}"
                )
                raise SchemaError(msg)


def select(
    metas: Sequence[FileMeta],
    tree: str,
    branches: Sequence[str] | None,
    exclude: Sequence[str],
) -> tuple[list[Column], dict[str, str]]:
    """The selected columns, checked in every file, and the unsupported ones skipped.

    ``branches`` holds names or glob patterns (order kept); None takes every
    supported column in the tree's order. ``exclude`` patterns drop columns
    from globs and from the default selection; a name given exactly is kept.
    """
    if isinstance(branches, str):
        branches = [branches]
    names, skipped = _chosen(metas[0], branches, tuple(exclude), tree)
    if not names:
        msg = f"the selection leaves no branch of tree {tree!r} in {metas[0].path}"
        raise EmptyDataError(msg)
    _check_everywhere(metas, names, tree)
    return [metas[0].columns[name] for name in names], skipped
