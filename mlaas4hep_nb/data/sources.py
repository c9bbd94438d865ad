"""Browse ROOT files: the trees they hold, their branches, a histogram of one branch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import awkward as ak
import hist
import numpy as np

from ..errors import SchemaError
from .parallel import map_ordered
from .paths import PathLike, expand
from .rootio import (
    Column,
    columns,
    kind_of,
    open_file,
    open_tree,
    read_columns,
    shape_name,
    tree_names,
)
from .scan import alias_column

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "BranchInfo",
    "Catalog",
    "TreeInfo",
    "alias_info",
    "branches",
    "catalog",
    "list_trees",
    "preview",
]


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class TreeInfo:
    """A TTree or RNTuple: its path in the file(s), kind, total entries and number of files."""

    name: str
    kind: str
    entries: int
    files: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BranchInfo:
    """A branch (TTree) or leaf field (RNTuple) and whether it can become numeric features.

    ``fixed`` is the length of a fixed-size array branch (``float[3]``), which is
    not jagged: it gives ``fixed`` features, all real values.
    """

    name: str
    dtype: str | None
    jagged: bool
    title: str
    typename: str
    supported: bool
    reason: str | None = None
    fixed: int | None = None

    @property
    def shape(self) -> str:
        """``"flat"``, ``"jagged"`` or ``"fixed[n]"``."""
        return shape_name(self.jagged, self.fixed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _trees_in(path: str) -> list[TreeInfo]:
    directory = open_file(path)
    infos = []
    for name in tree_names(directory):
        tree = directory[name]
        infos.append(TreeInfo(name, kind_of(tree), int(tree.num_entries)))
    return infos


def list_trees(path: PathLike) -> list[TreeInfo]:
    """Every TTree and RNTuple in the file(s), nested TDirectories included.

    For several files (a glob or a list), entries are summed per tree name and
    ``files`` counts the files that hold it.
    """
    merged: dict[str, TreeInfo] = {}
    for infos in map_ordered(_trees_in, expand(path)):
        for info in infos:
            seen = merged.get(info.name)
            if seen is None:
                merged[info.name] = info
            else:
                merged[info.name] = TreeInfo(
                    info.name, seen.kind, seen.entries + info.entries, seen.files + 1
                )
    return list(merged.values())


def _info(column: Column) -> BranchInfo:
    return BranchInfo(
        name=column.name,
        dtype=column.dtype,
        jagged=column.jagged,
        title=column.title,
        typename=column.typename,
        supported=column.supported,
        reason=column.problem,
        fixed=column.fixed,
    )


def branches(path: PathLike, tree: str = "Events") -> list[BranchInfo]:
    """The branches of ``tree`` in the (first) file, unsupported types flagged, not hidden."""
    first = expand(path)[0]
    return [_info(column) for column in columns(open_tree(first, tree)).values()]


@dataclass(frozen=True)
class Catalog:
    """The branches of one tree across files: their union in order, and where each is.

    Attributes
    ----------
    files : the files read, in order.
    branches : every branch of any file, first seen first (as that file has it).
    holders : branch name -> the files that hold it.
    """

    tree: str
    files: tuple[str, ...]
    branches: tuple[BranchInfo, ...]
    holders: Mapping[str, frozenset[str]]

    def count(self, name: str, files: Sequence[str]) -> int:
        """How many of ``files`` hold the branch ``name``."""
        held = self.holders.get(name, frozenset())
        return sum(path in held for path in files)


def catalog(path: PathLike, tree: str = "Events") -> Catalog:
    """The branches of ``tree`` in every file (read in parallel), for files of other schemas."""
    files = expand(path)
    found: dict[str, BranchInfo] = {}
    holders: dict[str, set[str]] = {}
    listed = map_ordered(lambda file: columns(open_tree(file, tree)), files)
    for file, file_columns in zip(files, listed, strict=True):
        for name, column in file_columns.items():
            found.setdefault(name, _info(column))
            holders.setdefault(name, set()).add(file)
    frozen = {name: frozenset(paths) for name, paths in holders.items()}
    return Catalog(tree, tuple(files), tuple(found.values()), frozen)


def alias_info(path: str, tree: str, name: str, expression: str) -> BranchInfo:
    """An alias evaluated on the first entries of ``path``: its type, or a `SchemaError`.

    The same check `DataStream` and `compute_specs` make of ``aliases=``, on one file.
    """
    where = f"{path}:{tree}"
    return _info(alias_column(open_tree(path, tree), name, expression, where))


def _axis(values: NDArray[np.float64], dtype: str, bins: int, name: str) -> hist.axis.AxisProtocol:
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if (dtype == "bool" or dtype.startswith(("int", "uint"))) and high - low < bins:
        return hist.axis.Integer(int(low), int(high) + 1, name=name, label=name)
    if high <= low:
        high = low + 1.0
    return _regular_including(bins, low, high, name)


def _regular_including(bins: int, low: float, high: float, name: str) -> hist.axis.Regular:
    """A regular axis from ``low`` whose last bin holds ``high``, its upper edge barely above.

    An edge one ulp above ``high`` is not enough: the axis computes a bin
    from ``(x - low) / (edge - low)``, which rounds to 1 (the overflow) for
    ``x = high`` when the width is large next to that ulp. The edge is raised
    in doubling steps until the axis itself puts ``high`` in range.
    """
    step = max(np.spacing(abs(high)), np.spacing(high - low))
    while True:
        axis = hist.axis.Regular(bins, low, high + step, name=name, label=name)
        if axis.index(high) < bins:
            return axis
        step *= 2


def preview(
    path: PathLike,
    tree: str,
    branch: str,
    bins: int = 50,
    entry_stop: int | None = None,
) -> hist.Hist[hist.storage.Double]:
    """A histogram of ``branch`` (jagged values flattened), reading only that branch.

    ``entry_stop`` limits the number of entries read, across files in order.
    """
    parts = []
    remaining = entry_stop
    dtype = "float64"
    for file in expand(path):
        handle = open_tree(file, tree)
        column = columns(handle).get(branch)
        if column is None:
            msg = f"branch {branch!r} missing in {file} (tree {tree!r})"
            raise SchemaError(msg)
        if not column.supported:
            msg = f"branch {branch!r} in {file} cannot be histogrammed: {column.problem}"
            raise SchemaError(msg)
        dtype = column.dtype or dtype
        stop = handle.num_entries if remaining is None else min(remaining, handle.num_entries)
        array = read_columns(handle, [branch], 0, stop)[branch]
        parts.append(np.asarray(ak.flatten(array, axis=None), dtype=np.float64))
        if remaining is not None:
            remaining -= stop
            if remaining <= 0:
                break
    values = np.concatenate(parts)
    values = values[np.isfinite(values)]
    axis = _axis(values, dtype, bins, branch)
    histogram = hist.Hist(axis, storage=hist.storage.Double())
    histogram.fill(values.astype(np.int64) if isinstance(axis, hist.axis.Integer) else values)
    return histogram
