"""Check a set of files against a branch selection, before anything is read."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, cast

from ..errors import EmptyDataError, SchemaError, SkippedBranchWarning, SourceError, warn_user
from .expressions import read_with_aliases
from .handles import OpenFiles
from .parallel import map_ordered
from .rootio import Column, Tree, classify, cluster_starts, columns, open_tree, warm_vector_reads

__all__ = [
    "DEFAULT_EXCLUDE",
    "FileMeta",
    "alias_column",
    "aliases_by_file",
    "exact_names",
    "scan",
    "select",
]

#: Computed columns: ``{name: expression}`` for every file, or ``{label: {name: expression}}``.
Aliases: TypeAlias = Mapping[str, str] | Mapping[int, Mapping[str, str]]

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


def alias_column(handle: Tree, name: str, expression: str, where: str) -> Column:
    """An alias as a column: its type is that of its value on the first entries."""
    sample = read_with_aliases(
        handle, [name], 0, min(64, handle.num_entries), {name: expression}, where
    )[name]
    shape = classify(sample.layout.form)
    return Column(name, f"= {expression}", f"alias of {shape[0]}", *shape)


def _meta(
    path: str, tree: str, aliases: Mapping[str, str], open_files: OpenFiles | None
) -> FileMeta:
    if open_files is None:
        return _meta_of(open_tree(path, tree), path, tree, aliases)
    with open_files.tree(path, tree) as handle:
        return _meta_of(handle, path, tree, aliases)


def _meta_of(handle: Tree, path: str, tree: str, aliases: Mapping[str, str]) -> FileMeta:
    found = columns(handle)
    for name, expression in aliases.items():
        found[name] = alias_column(handle, name, expression, f"{path}:{tree}")
    return FileMeta(path, int(handle.num_entries), found, tuple(cluster_starts(handle)))


def scan(
    files: Sequence[str],
    tree: str,
    aliases: Mapping[str, Mapping[str, str]] | None = None,
    max_workers: int = 8,
    skipped: dict[str, str] | None = None,
    open_files: OpenFiles | None = None,
) -> list[FileMeta]:
    """Open every file (in parallel, keeping order) and list its tree's columns.

    ``aliases`` maps a file to its computed columns ``{name: expression}``.
    With a ``skipped`` dict, unreachable files are recorded there (path ->
    reason) and left out instead of raising. With ``open_files``, the files
    are opened there and stay open for the reads that follow. Meanwhile each
    XRootD server is asked its vector-read limits (`warm_vector_reads`).
    """
    aliases = aliases or {}

    def meta(path: str) -> FileMeta | None:
        try:
            return _meta(path, tree, aliases.get(path, {}), open_files)
        except SourceError as err:
            if skipped is None:
                raise
            skipped[path] = str(err)
            return None

    warming = threading.Thread(target=warm_vector_reads, args=(files,), daemon=True)
    warming.start()
    try:
        return [m for m in map_ordered(meta, files, max_workers) if m is not None]
    finally:
        warming.join()


def aliases_by_file(
    groups: Mapping[int, Sequence[str]] | Sequence[str],
    aliases: Aliases | None,
) -> dict[str, Mapping[str, str]]:
    """Each file's aliases: one ``{name: expression}`` for all, or ``{label: {...}}`` per label."""
    if not aliases:
        return {}
    per_label = all(isinstance(key, int) for key in aliases)
    if not per_label:
        files = [p for ps in groups.values() for p in ps] if isinstance(groups, Mapping) else groups
        return {path: dict(cast("Mapping[str, str]", aliases)) for path in files}
    by_label = cast("Mapping[int, Mapping[str, str]]", aliases)
    if not isinstance(groups, Mapping):
        msg = "aliases per label ({label: {name: expression}}) need {label: files} sources"
        raise ValueError(msg)
    names = {label: set(definitions) for label, definitions in by_label.items()}
    if len({frozenset(n) for n in names.values()}) > 1 or set(by_label) != set(groups):
        msg = f"aliases per label must define the same names for every label: {names}"
        raise ValueError(msg)
    return {path: dict(by_label[label]) for label, paths in groups.items() for path in paths}


def _is_pattern(name: str) -> bool:
    return any(char in name for char in "*?[")


def exact_names(branches: Sequence[str] | str | None) -> set[str]:
    """The names a selection gives exactly (not as glob patterns); none for the default one."""
    if isinstance(branches, str):
        branches = [branches]
    return {name for name in branches or () if not _is_pattern(name)}


def _chosen(
    first: FileMeta, branches: Sequence[str] | None, exclude: Sequence[str], tree: str
) -> tuple[list[str], dict[str, str]]:
    """Names picked from the first file, and the unsupported ones left out (with why)."""
    available = list(first.columns)
    excluded = [name for name in available if any(fnmatch.fnmatchcase(name, p) for p in exclude)]
    picked: list[str]
    skipped: dict[str, str]
    if branches is None:
        picked = [name for name in available if name not in excluded]
        skipped = _unsupported(first, picked)
        return [name for name in picked if name not in skipped], skipped
    picked = []
    skipped = {}
    for pattern in branches:
        if not _is_pattern(pattern):
            matches = [pattern]  # checked in every file by _check_everywhere
        else:
            matches = [
                n for n in available if fnmatch.fnmatchcase(n, pattern) and n not in excluded
            ]
            if not matches:
                msg = f"no branch of tree {tree!r} in {first.path} matches {pattern!r}"
                raise SchemaError(msg)
            unusable = _unsupported(first, matches)
            if len(unusable) == len(matches):
                msg = (
                    f"{pattern!r} matches only branches of tree {tree!r} in {first.path} "
                    f"that cannot be features: {_listed(unusable)}"
                )
                raise SchemaError(msg)
            skipped.update(unusable)
            matches = [name for name in matches if name not in unusable]
        picked.extend(name for name in matches if name not in picked)
    return picked, skipped


def _unsupported(meta: FileMeta, names: Sequence[str]) -> dict[str, str]:
    """The names among ``names`` whose columns cannot be features, with why."""
    # cast: an unsupported column has a problem (supported is ``problem is None``)
    return {n: cast(str, meta.columns[n].problem) for n in names if not meta.columns[n].supported}


def _listed(reasons: Mapping[str, str]) -> str:
    return "; ".join(f"{name} ({why})" for name, why in reasons.items())


def _shape(column: Column) -> str:
    if column.fixed is not None:
        return f"a fixed-size array of {column.fixed}"
    return "jagged" if column.jagged else "flat" if column.depth == 0 else "nested"


def _kind(dtype: str | None) -> str:
    """Values that become the same float32 feature: ``"float"`` or ``"integral"`` (bool too)."""
    return "float" if dtype is not None and dtype.startswith("float") else "integral"


def _check_everywhere(metas: Sequence[FileMeta], names: Sequence[str], tree: str) -> None:
    """Each name is in every file, usable, and of one shape and kind of number everywhere.

    Integer widths, signedness and bool mix (``nJet`` is ``uint32_t`` in a
    TTree, an int64 cardinality in an RNTuple), and so do float and double:
    they all become the same float32 feature. Integers and floats do not mix,
    nor do flat, jagged and fixed-size arrays.
    """
    for name in names:
        holders = [meta for meta in metas if name in meta.columns]
        if len(holders) < len(metas):
            missing = next(meta.path for meta in metas if name not in meta.columns)
            msg = (
                f"branch {name!r} missing in {missing} (tree {tree!r}); "
                f"present in {len(holders)} of {len(metas)} files"
            )
            raise SchemaError(msg)
        first = holders[0]
        column = first.columns[name]
        if not column.supported:
            msg = f"branch {name!r} in {first.path} is unsupported: {column.problem}"
            raise SchemaError(msg)
        for meta in holders[1:]:
            _check_same(name, column, first.path, meta.columns[name], meta.path)


def _check_same(name: str, column: Column, path: str, other: Column, other_path: str) -> None:
    """Raise SchemaError unless ``other`` (in ``other_path``) fits ``column`` (in ``path``)."""
    if (other.depth, other.fixed) != (column.depth, column.fixed):
        msg = (
            f"branch {name!r} is {_shape(other)} ({other.typename}) in {other_path} "
            f"but {_shape(column)} ({column.typename}) in {path}"
        )
        raise SchemaError(msg)
    computed = column.typename.startswith("= ")  # aliases may differ in precision
    if not other.supported or (not computed and _kind(other.dtype) != _kind(column.dtype)):
        msg = (
            f"branch {name!r} has type {other.typename} in {other_path} "
            f"but {column.typename} in {path}"
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
    Unsupported columns (objects, strings, nested vectors) are skipped: the
    default selection does so silently, a glob with one `SkippedBranchWarning`
    (a glob that matches only such columns is an error, and so is a name given
    exactly).
    """
    if isinstance(branches, str):
        branches = [branches]
    names, skipped = _chosen(metas[0], branches, tuple(exclude), tree)
    if skipped and branches is not None:  # the user's globs asked for them: say so
        warn_user(
            f"left out {len(skipped)} branch(es) matched by {list(branches)} that cannot be "
            f"features: {_listed(skipped)} (listed in spec.skipped)",
            SkippedBranchWarning,
        )
    if not names:
        msg = f"the selection leaves no branch of tree {tree!r} in {metas[0].path}"
        raise EmptyDataError(msg)
    _check_everywhere(metas, names, tree)
    return [next(m.columns[n] for m in metas if n in m.columns) for n in names], skipped
