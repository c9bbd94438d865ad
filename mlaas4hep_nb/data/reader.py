"""Read one unit (a cluster-aligned entry range of one file) into converted arrays.

A `UnitReader` is a small picklable callable, so the same code runs on the
stream's reader threads and on Dask workers. Remote reads are retried with
backoff. The stream's threads borrow the files its scan opened (`OpenFiles`);
on a Dask worker, each thread keeps its own open files for the process's life.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

import awkward as ak
import numpy as np

from ..errors import SourceError
from .convert import Block, Converter
from .expressions import evaluate_cut, read_with_aliases
from .handles import OpenFiles
from .paths import is_remote
from .plan import Unit, file_key, validation_mask
from .rootio import Tree, forget_remote, open_tree
from .spec import FeatureSpec

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["NAMES_PER_READ", "Part", "UnitReader", "close_file", "read_passing", "with_retries"]

_OPEN_FILES_PER_THREAD = 8
#: Columns read at a time: uproot holds every basket of a read until it returns.
NAMES_PER_READ = 64

T = TypeVar("T")


def __dir__() -> list[str]:
    return __all__


@dataclass
class Part:
    """Converted rows of a unit or a chunk; ``rows`` are entry numbers relative to the unit.

    ``nonfinite`` maps ``"branch (file)"`` to the NaN/inf count in each row,
    for the branches that have some.
    """

    x: NDArray[np.float32]
    mask: NDArray[np.bool_]
    y: NDArray[np.float32]
    validation: NDArray[np.bool_]
    rows: NDArray[np.int64]
    nonfinite: dict[str, NDArray[np.int64]] = field(default_factory=dict)

    #: the arrays of one value per row, besides ``nonfinite``
    FIELDS = ("x", "mask", "y", "validation", "rows")

    @property
    def nbytes(self) -> int:
        """Bytes of all its arrays."""
        arrays = [getattr(self, name) for name in self.FIELDS] + list(self.nonfinite.values())
        return sum(int(array.nbytes) for array in arrays)

    @classmethod
    def empty(cls, n_features: int) -> Part:
        return cls(
            np.empty((0, n_features), np.float32),
            np.empty((0, n_features), bool),
            np.empty(0, np.float32),
            np.empty(0, bool),
            np.empty(0, np.int64),
        )


class _OpenTrees(threading.local):
    """Trees kept open per thread, where no `OpenFiles` is given (Dask workers).

    One per process, not per reader: a reader unpickled for every Dask task
    still finds the files its worker opened before.
    """

    def __init__(self) -> None:
        self.trees: collections.OrderedDict[tuple[str, str, str | None], Tree] = (
            collections.OrderedDict()
        )

    def get(self, path: str, tree: str, cache_dir: str | None) -> Tree:
        key = (path, tree, cache_dir)
        handle = self.trees.pop(key, None)
        if handle is None:
            handle = open_tree(path, tree, cache_dir)
        self.trees[key] = handle
        while len(self.trees) > _OPEN_FILES_PER_THREAD:
            self.trees.popitem(last=False)
        return handle

    def drop(self, path: str) -> None:
        forget_remote(path)
        for key in [key for key in self.trees if key[0] == path]:
            del self.trees[key]


_OPEN_TREES = _OpenTrees()


def close_file(path: str) -> None:
    """Drop this thread's open handles of ``path`` (the next read opens it again)."""
    _OPEN_TREES.drop(path)


def with_retries(
    path: str,
    action: Callable[[], T],
    retries: int,
    backoff: float,
    forget: Callable[[], object] | None = None,
) -> T:
    """Run ``action()``; for remote files retry SourceErrors with exponential backoff.

    ``forget()`` is called after every failure (the file is opened afresh).
    """
    attempts = retries + 1 if is_remote(path) else 1
    for attempt in range(attempts):
        try:
            return action()
        except SourceError:
            if forget is not None:
                forget()  # the last attempt too: nothing dead is kept open for later
            if attempt == attempts - 1:
                raise
            time.sleep(backoff * 2**attempt)
    msg = "with_retries made no attempt"
    raise AssertionError(msg)


def read_passing(
    path: str,
    tree: str,
    names: Sequence[str],
    start: int,
    stop: int,
    *,
    cut: str | None = None,
    cut_names: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
    retries: int = 3,
    backoff: float = 0.5,
    cache_dir: str | None = None,
    open_files: OpenFiles | None = None,
) -> tuple[dict[str, ak.Array], NDArray[np.int64]]:
    """Columns ``names`` of the entries in ``[start, stop)`` that pass ``cut``, and their numbers.

    The data layer's one read-then-cut (specs, units, counts): it reads
    through ``open_files`` (else the thread's own open files), computes
    aliases, and retries a failing remote read with backoff, on a file opened
    afresh. ``cut_names`` are the columns the cut reads.
    """
    where = f"{path}:{tree}"
    read_names = list(dict.fromkeys([*names, *cut_names]))
    if not read_names:
        return {}, np.arange(start, stop)

    def action() -> dict[str, ak.Array]:
        if open_files is None:
            handle = _OPEN_TREES.get(path, tree, cache_dir)
            return read_with_aliases(handle, read_names, start, stop, aliases or {}, where)
        with open_files.tree(path, tree, cache_dir) as handle:
            return read_with_aliases(handle, read_names, start, stop, aliases or {}, where)

    def forget() -> None:
        if open_files is None:
            close_file(path)
        else:
            open_files.drop(path)

    arrays = with_retries(path, action, retries, backoff, forget=forget)
    entries = np.arange(start, stop)
    if cut:
        passed = evaluate_cut(cut, arrays, where)
        entries = entries[passed]
        return {name: arrays[name][passed] for name in names}, entries
    return {name: arrays[name] for name in names}, entries


@dataclass
class UnitReader:
    """Read, cut, convert and label one `Unit`; picklable for Dask workers.

    It reads ``names_per_read`` columns at a time (uproot holds every basket
    of a read until it returns) and converts them before reading more, into
    blocks of at most ``block`` entries that a stream frees as its chunks
    take them.
    """

    tree: str
    names: Sequence[str]
    spec: FeatureSpec
    normalize: str | None
    labels: Sequence[int | None]
    label_branch: str | None = None
    cut: str | None = None
    cut_names: Sequence[str] = ()
    aliases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    seed: int = 0
    validation_fraction: float = 0.2
    retries: int = 3
    backoff: float = 0.5
    cache_dir: str | None = None
    block: int | None = None
    names_per_read: int = NAMES_PER_READ
    #: the stream's open files (left behind when pickled for a Dask worker)
    open_files: OpenFiles | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._converter = Converter(self.spec, self.normalize)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_converter"]
        state["open_files"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def passing(
        self,
        path: str,
        names: Sequence[str],
        start: int,
        stop: int,
        cut_names: Sequence[str] = (),
        with_cut: bool = True,
    ) -> tuple[dict[str, ak.Array], NDArray[np.int64]]:
        """`read_passing` with this reader's tree, cut, aliases, retries and cache.

        ``with_cut=False`` reads every entry (for columns read after the cut was evaluated).
        """
        return read_passing(
            path,
            self.tree,
            names,
            start,
            stop,
            cut=self.cut if with_cut else None,
            cut_names=cut_names,
            aliases=self.aliases.get(path),
            retries=self.retries,
            backoff=self.backoff,
            cache_dir=self.cache_dir,
            open_files=self.open_files,
        )

    def __call__(self, unit: Unit) -> list[Part]:
        """The unit's rows passing the cut, in blocks of at most ``block`` entries."""
        features = {branch.name for branch in self.spec.branches}
        others = [name for name in self.names if name not in features]
        arrays, entries = self.passing(unit.file, others, unit.start, unit.stop, self.cut_names)
        rows = entries - unit.start
        passed = None
        if self.cut:
            passed = np.zeros(unit.size, dtype=bool)
            passed[rows] = True
        parts = max(1, -(-unit.size // (self.block or unit.size)))
        edges = [unit.size * i // parts for i in range(parts + 1)]
        blocks = self._converter.blocks(np.searchsorted(rows, edges).tolist())
        wanted = [name for name in self.names if name in features]
        for first in range(0, len(wanted), self.names_per_read):
            self._convert(unit, wanted[first : first + self.names_per_read], passed, blocks)
        label = self.labels[unit.group]
        if label is None:
            # a group without a label reads it from label_branch (set by DataStream)
            y = ak.to_numpy(arrays[cast(str, self.label_branch)]).astype(np.float32)
        else:
            y = np.full(len(entries), label, dtype=np.float32)
        validation = validation_mask(
            file_key(unit.file), entries, self.seed, self.validation_fraction
        )
        return [
            Part(
                block.x,
                block.mask,
                y[block.start : block.stop],
                validation[block.start : block.stop],
                rows[block.start : block.stop],
                {f"{k} ({unit.file})": v for k, v in block.nonfinite.items()},
            )
            for block in blocks
        ]

    def _convert(
        self,
        unit: Unit,
        names: Sequence[str],
        passed: NDArray[np.bool_] | None,
        blocks: list[Block],
    ) -> None:
        """Read columns ``names`` of the unit and convert them into ``blocks`` (then drop them)."""
        arrays, _ = self.passing(unit.file, names, unit.start, unit.stop, with_cut=False)
        if passed is not None:
            arrays = {name: array[passed] for name, array in arrays.items()}
        self._converter.fill(blocks, arrays)
