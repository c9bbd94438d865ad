"""DataStream: ROOT files and labels in, shuffled chunks of (X, mask, y) out."""

from __future__ import annotations

import collections
import math
import os
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import awkward as ak
import numpy as np

from .convert import Converter
from .errors import EmptyDataError, SchemaError
from .expressions import cut_symbols, evaluate_cut, read_with_aliases
from .parallel import map_ordered
from .paths import PathLike, expand
from .plan import Group, Slice, Unit, file_key, file_units, layout, validation_mask
from .rootio import open_tree
from .selection import DEFAULT_EXCLUDE, FileMeta, aliases_by_file, scan, select
from .specs import FeatureSpec, compute_specs

__all__ = ["DataStream", "NonFiniteWarning"]

_SPLITS = (None, "train", "validation")
_OPEN_FILES_PER_THREAD = 8


def __dir__() -> list[str]:
    return __all__


class NonFiniteWarning(UserWarning):
    """NaN or inf values were found, replaced by 0 and masked."""


@dataclass
class _Part:
    """Converted rows of a unit or chunk; ``rows`` are entry numbers relative to the unit."""

    x: np.ndarray
    mask: np.ndarray
    y: np.ndarray
    validation: np.ndarray
    rows: np.ndarray
    nonfinite: dict[str, int]


@dataclass
class _Finished:
    """An already computed result with a Future's ``result``/``cancel`` (no reader threads)."""

    value: _Part

    def result(self) -> _Part:
        return self.value

    def cancel(self) -> bool:
        return False


class _OpenTrees(threading.local):
    """Trees kept open per thread (uproot handles are not shared across threads)."""

    def __init__(self) -> None:
        self.trees: collections.OrderedDict = collections.OrderedDict()

    def get(self, path: str, tree: str):
        handle = self.trees.pop(path, None)
        if handle is None:
            handle = open_tree(path, tree)
        self.trees[path] = handle
        while len(self.trees) > _OPEN_FILES_PER_THREAD:
            self.trees.popitem(last=False)
        return handle


def _groups_of(sources, label: str | None, redirector: str | None) -> list[tuple]:
    if isinstance(sources, Mapping):
        if label is not None:
            msg = "give either {label: files} sources or label='branch', not both"
            raise ValueError(msg)
        keys = sorted(sources)
        if keys != list(range(len(keys))):
            msg = f"labels must be the integers 0..K-1, got {keys}"
            raise ValueError(msg)
        return [(key, expand(sources[key], redirector)) for key in keys]
    if label is None:
        msg = "unlabelled sources: give {label: files} or label='<branch holding the target>'"
        raise ValueError(msg)
    return [(None, expand(sources, redirector))]


class DataStream:
    """Stream ROOT files as chunks of padded, normalised float32 features and labels.

    Parameters
    ----------
    sources : ``{label: files}`` with labels 0..K-1 (one label per file, as
        MLaaS4HEP), or files (path, URL, glob or list) with ``label="branch"``.
    tree : the TTree or RNTuple name.
    branches, exclude, max_len : the selection, as for `compute_specs`.
    specs : a `FeatureSpec` (or the path of one); computed when None.
    chunk_size : events read and converted at a time; bounds memory.
    batch_size : events per batch for the Keras and tf.data adapters.
    shuffle : shuffle events within chunks and the order of chunks, by ``seed``.
    seed : the seed of shuffling and of the train/validation split.
    cut : an uproot cut expression applied before anything else.
    label : the branch holding the target when ``sources`` is not a dict.
    normalize : ``"minmax"`` (to [0, 1]), ``"standard"`` or None.
    validation_fraction : the share of events (chosen by a hash of file and
        entry, fixed by ``seed``) in the ``"validation"`` split.
    aliases : computed columns ``{name: expression}``, or ``{label: {...}}`` per
        label to map samples with other schemas onto the same features (see
        `compute_specs`).
    max_workers : threads that read and convert chunks ahead of the consumer.
    progress : show a progress bar while computing the spec.
    redirector : prefix for ``/store/...`` logical file names.
    """

    def __init__(
        self,
        sources: Mapping[int, PathLike] | PathLike,
        tree: str = "Events",
        branches: Sequence[str] | None = None,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
        specs: FeatureSpec | str | os.PathLike | None = None,
        chunk_size: int = 10_000,
        batch_size: int = 256,
        shuffle: bool = True,
        seed: int = 0,
        cut: str | None = None,
        label: str | None = None,
        normalize: str | None = "minmax",
        validation_fraction: float = 0.2,
        *,
        max_len: int | Mapping[str, int] | None = None,
        aliases: Mapping | None = None,
        max_workers: int = 2,
        progress: bool = True,
        redirector: str | None = None,
    ) -> None:
        if chunk_size < 1 or batch_size < 1:
            msg = "chunk_size and batch_size must be positive"
            raise ValueError(msg)
        if not 0.0 <= validation_fraction < 1.0:
            msg = f"validation_fraction must be in [0, 1), not {validation_fraction}"
            raise ValueError(msg)
        self.tree = tree
        self.chunk_size = int(chunk_size)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.cut = cut
        self.label = label
        self.validation_fraction = float(validation_fraction)
        self.max_workers = max(0, int(max_workers))
        self.report: dict = {"nonfinite": {}}
        groups = _groups_of(sources, label, redirector)
        self.files = [path for _, paths in groups for path in paths]
        self._by_label = dict(groups) if label is None else self.files
        self._aliases = aliases_by_file(self._by_label, aliases)
        self._alias_definitions = aliases
        metas = {meta.path: meta for meta in scan(self.files, tree, self._aliases)}
        self.groups = [
            Group(key, tuple(paths), tuple(metas[p].entries for p in paths))
            for key, paths in groups
        ]
        self.n_events = sum(group.total for group in self.groups)
        if self.n_events == 0:
            msg = f"tree {tree!r} is empty in all {len(self.files)} input file(s)"
            raise EmptyDataError(msg)
        if label is not None:
            self._check_label(list(metas.values()))
            exclude = (*exclude, label)
        self.spec = self._spec(specs, list(metas.values()), branches, exclude, max_len, progress)
        self._converter = Converter(self.spec, normalize)
        self.normalize = normalize
        self._cut_names = (
            cut_symbols(cut, list(metas[self.files[0]].columns), f"{self.files[0]}:{tree}")
            if cut
            else []
        )
        self._read_names = list(
            dict.fromkeys(
                [b.name for b in self.spec.branches] + self._cut_names + ([label] if label else [])
            )
        )
        self.classes = self._classes()
        self.n_chunks = max(1, math.ceil(self.n_events / self.chunk_size))
        self._units = [
            [
                unit
                for path in group.files
                for unit in file_units(
                    g, path, metas[path].entries, metas[path].clusters, self.chunk_size
                )
            ]
            for g, group in enumerate(self.groups)
        ]
        self._passes: collections.Counter = collections.Counter()
        self._open = _OpenTrees()
        self._pool: ThreadPoolExecutor | None = None
        self._warned = False
        self._counts: dict = {}

    # --- setup -------------------------------------------------------------------------

    def _spec(self, specs, metas: list[FileMeta], branches, exclude, max_len, progress):
        if specs is None:
            return compute_specs(
                self._by_label,
                self.tree,
                branches,
                exclude,
                max_len,
                self.cut,
                aliases=self._alias_definitions,
                progress=progress,
            )
        if not isinstance(specs, FeatureSpec):
            specs = (
                FeatureSpec.from_dict(specs)
                if isinstance(specs, Mapping)
                else (FeatureSpec.load(specs))
            )
        names = [branch.name for branch in specs.branches]
        selected, _ = select(metas, self.tree, names, ())
        for column, branch in zip(selected, specs.branches, strict=False):
            if column.jagged != branch.jagged:
                kind = "jagged" if branch.jagged else "flat"
                msg = f"branch {column.name!r} is {kind} in the spec but not in {metas[0].path}"
                raise SchemaError(msg)
        return specs

    def _check_label(self, metas: list[FileMeta]) -> None:
        for meta in metas:
            column = meta.columns.get(self.label)
            if column is None:
                msg = f"label branch {self.label!r} missing in {meta.path} (tree {self.tree!r})"
                raise SchemaError(msg)
            if column.jagged or not column.supported:
                msg = f"label branch {self.label!r} in {meta.path} must be one number per event"
                raise SchemaError(msg)

    def _label_values(self, path: str) -> np.ndarray:
        handle = open_tree(path, self.tree)
        arrays = self._read(handle, path, [self.label, *self._cut_names], 0, handle.num_entries)
        values = ak.to_numpy(arrays[self.label])
        if self.cut:
            values = values[evaluate_cut(self.cut, arrays, f"{path}:{self.tree}")]
        if values.size and (np.any(values < 0) or np.any(values != np.round(values))):
            msg = f"label branch {self.label!r} in {path} holds values that are not 0..K-1"
            raise SchemaError(msg)
        return np.unique(values)

    def _classes(self) -> list[int]:
        if self.label is None:
            return [group.label for group in self.groups]
        seen = np.unique(np.concatenate(list(map_ordered(self._label_values, self.files))))
        return list(range(int(seen.max()) + 1)) if seen.size else [0]

    # --- public properties ---------------------------------------------------------------

    @property
    def features(self) -> list[str]:
        return self.spec.features

    @property
    def n_features(self) -> int:
        return self.spec.n_features

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{'label ' + str(g.label) if g.label is not None else self.label}: "
            f"{len(g.files)} files/{g.total} events"
            for g in self.groups
        )
        return (
            f"DataStream({sizes}; {self.n_features} features, {self.n_chunks} chunks of "
            f"~{self.chunk_size}, tree {self.tree!r})"
        )

    # --- reading -----------------------------------------------------------------------

    def _read(self, handle, path: str, names: list[str], start: int, stop: int) -> dict:
        where = f"{path}:{self.tree}"
        return read_with_aliases(handle, names, start, stop, self._aliases.get(path, {}), where)

    def _read_unit(self, unit: Unit) -> _Part:
        """Read, cut and convert one cluster-aligned unit (runs on a reader thread)."""
        where = f"{unit.file}:{self.tree}"
        handle = self._open.get(unit.file, self.tree)
        arrays = self._read(handle, unit.file, self._read_names, unit.start, unit.stop)
        entries = np.arange(unit.start, unit.stop)
        if self.cut:
            passed = evaluate_cut(self.cut, arrays, where)
            arrays = {name: array[passed] for name, array in arrays.items()}
            entries = entries[passed]
        x, mask, nonfinite = self._converter(arrays)
        label = self.groups[unit.group].label
        if label is None:
            y = ak.to_numpy(arrays[self.label]).astype(np.float32)
        else:
            y = np.full(len(entries), label, dtype=np.float32)
        validation = validation_mask(
            file_key(unit.file), entries, self.seed, self.validation_fraction
        )
        return _Part(
            x,
            mask,
            y,
            validation,
            entries - unit.start,
            {f"{k} ({unit.file})": v for k, v in nonfinite.items()},
        )

    def _unit_orders(self, shuffle_seed) -> list[list[Unit]]:
        orders = []
        for g, units in enumerate(self._units):
            if shuffle_seed is not None:
                rng = np.random.default_rng([*shuffle_seed, g])
                units = [units[i] for i in rng.permutation(len(units))]
            orders.append(units)
        return orders

    def _assemble(self, pieces: list[tuple[_Part, Slice]], index: int, shuffle_seed) -> _Part:
        """Cut each unit to its slice and join them, scattering rows to shuffled places."""
        bounds = [
            (
                np.searchsorted(part.rows, piece.low - piece.offset),
                np.searchsorted(part.rows, piece.high - piece.offset),
            )
            for part, piece in pieces
        ]
        n = sum(int(hi - lo) for lo, hi in bounds)
        place = (
            np.random.default_rng([*shuffle_seed, index]).permutation(n)
            if shuffle_seed is not None
            else np.arange(n)
        )
        chunk = _Part(
            np.empty((n, self.n_features), np.float32),
            np.empty((n, self.n_features), bool),
            np.empty(n, np.float32),
            np.empty(n, bool),
            np.empty(n, np.int64),
            {},
        )
        done = 0
        for (part, _), (lo, hi) in zip(pieces, bounds, strict=True):
            where = place[done : done + hi - lo]
            for name in ("x", "mask", "y", "validation", "rows"):
                getattr(chunk, name)[where] = getattr(part, name)[lo:hi]
            done += hi - lo
        return chunk

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="mlaas4hep-read")
        return self._pool

    def _produce(self, shuffle_seed) -> Iterator[_Part]:
        """Chunks in order, reading units ahead on the thread pool with bounded read-ahead."""
        orders = self._unit_orders(shuffle_seed)
        chunks = layout(orders, self.n_chunks)
        needed = list(dict.fromkeys((g, s.unit) for chunk in chunks for g, s in chunk))
        last_use = {(g, s.unit): k for k, chunk in enumerate(chunks) for g, s in chunk}
        ahead = self.max_workers + 1  # units read ahead of the consumer: memory stays flat
        pending: dict[tuple[int, int], Future | _Part] = {}
        submitted = 0

        def read(key: tuple[int, int]):
            unit = orders[key[0]][key[1]]
            if self.max_workers == 0:
                return _Finished(self._read_unit(unit))
            return self._executor().submit(self._read_unit, unit)

        try:
            for k, chunk in enumerate(chunks):
                keys = [(g, s.unit) for g, s in chunk]
                horizon = max([needed.index(key) for key in keys[-1:]] or [submitted - 1])
                while submitted < len(needed) and submitted <= horizon + ahead:
                    pending[needed[submitted]] = read(needed[submitted])
                    submitted += 1
                pieces = [(pending[(g, s.unit)].result(), s) for g, s in chunk]
                assembled = self._assemble(pieces, k, shuffle_seed)
                for key, (part, _) in zip(keys, pieces, strict=True):
                    if last_use[key] == k:  # a unit's NaN counts go with its last chunk
                        del pending[key]
                        for name, count in part.nonfinite.items():
                            assembled.nonfinite[name] = assembled.nonfinite.get(name, 0) + count
                yield assembled
        finally:
            for future in pending.values():
                future.cancel()

    def _note_nonfinite(self, nonfinite: dict[str, int]) -> None:
        for key, count in nonfinite.items():
            self.report["nonfinite"][key] = self.report["nonfinite"].get(key, 0) + count
        if nonfinite and not self._warned:
            self._warned = True
            first, count = next(iter(nonfinite.items()))
            warnings.warn(
                f"{count} NaN/inf value(s) in branch {first} replaced by 0 and masked; "
                "stream.report['nonfinite'] counts them all (this warning is shown once)",
                NonFiniteWarning,
                stacklevel=3,
            )

    def chunks(
        self, split: str | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(X, mask, y)`` chunks over the events of ``split``.

        ``split`` is ``"train"``, ``"validation"`` or None (every event). Each
        event appears exactly once per pass. With ``shuffle``, every pass
        visits chunks in a new order (fixed by ``seed`` and the pass number)
        and shuffles events within each chunk; validation is never shuffled.
        """
        if split not in _SPLITS:
            msg = f"split must be one of {_SPLITS}, not {split!r}"
            raise ValueError(msg)
        shuffle_seed = None
        if self.shuffle and split != "validation":
            shuffle_seed = (self.seed, self._passes[split])
            self._passes[split] += 1
        for chunk in self._produce(shuffle_seed):
            self._note_nonfinite(chunk.nonfinite)
            if split is None:
                yield chunk.x, chunk.mask, chunk.y
                continue
            keep = chunk.validation if split == "validation" else ~chunk.validation
            if keep.any():
                yield chunk.x[keep], chunk.mask[keep], chunk.y[keep]

    def split_chunks(self) -> Iterator[tuple[tuple, tuple]]:
        """Yield ``((X, mask, y) of train, (X, mask, y) of validation)`` per chunk.

        One read serves both splits: training can validate on rows it already
        read instead of reading the files twice per epoch. Shuffled like "train".
        """
        shuffle_seed = None
        if self.shuffle:
            shuffle_seed = (self.seed, self._passes["train"])
            self._passes["train"] += 1
        for chunk in self._produce(shuffle_seed):
            self._note_nonfinite(chunk.nonfinite)
            val = chunk.validation
            yield (
                (chunk.x[~val], chunk.mask[~val], chunk.y[~val]),
                (chunk.x[val], chunk.mask[val], chunk.y[val]),
            )

    def batches(
        self, split: str | None = None, batch_size: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(X, mask, y)`` batches of ``batch_size`` events (the last may be short)."""
        size = batch_size or self.batch_size
        held: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        held_n = 0
        for x, mask, y in self.chunks(split):
            if held:
                need = size - held_n
                held.append((x[:need], mask[:need], y[:need]))
                held_n += min(need, len(y))
                x, mask, y = x[need:], mask[need:], y[need:]
                if held_n < size:
                    continue
                yield tuple(np.concatenate(parts) for parts in zip(*held, strict=False))
                held, held_n = [], 0
            full = len(y) - len(y) % size
            for start in range(0, full, size):
                yield x[start : start + size], mask[start : start + size], y[start : start + size]
            if full < len(y):
                held, held_n = [(x[full:], mask[full:], y[full:])], len(y) - full
        if held:
            yield tuple(np.concatenate(parts) for parts in zip(*held, strict=False))

    def count(self, split: str | None = None) -> int:
        """Events in ``split`` (after the cut); reads only the cut's branches when there is one."""
        if split not in _SPLITS:
            msg = f"split must be one of {_SPLITS}, not {split!r}"
            raise ValueError(msg)
        if not self._counts:
            totals = np.zeros(2, dtype=np.int64)
            for group in self.groups:
                for _path, validation in zip(
                    group.files, map_ordered(self._file_split, group.files), strict=False
                ):
                    totals += (int((~validation).sum()), int(validation.sum()))
            self._counts = {
                "train": int(totals[0]),
                "validation": int(totals[1]),
                None: int(totals.sum()),
            }
        return self._counts[split]

    def _file_split(self, path: str) -> np.ndarray:
        handle = open_tree(path, self.tree)
        entries = np.arange(handle.num_entries)
        if self.cut:
            arrays = self._read(handle, path, self._cut_names, 0, handle.num_entries)
            entries = entries[evaluate_cut(self.cut, arrays, f"{path}:{self.tree}")]
        return validation_mask(file_key(path), entries, self.seed, self.validation_fraction)

    # --- adapters ----------------------------------------------------------------------

    def to_tf_dataset(self, split: str | None = "train", with_mask: bool = False):
        """A ``tf.data.Dataset`` of ``(X, y)`` batches (``((X, mask), y)`` with ``with_mask``)."""
        import tensorflow as tf

        n = self.n_features
        x_spec = tf.TensorSpec([None, n], tf.float32)
        if with_mask:
            signature = (
                (x_spec, tf.TensorSpec([None, n], tf.bool)),
                tf.TensorSpec([None], tf.float32),
            )

            def generate():
                for x, mask, y in self.batches(split):
                    yield (x, mask), y
        else:
            signature = (x_spec, tf.TensorSpec([None], tf.float32))

            def generate():
                for x, _, y in self.batches(split):
                    yield x, y

        dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
        return dataset.prefetch(2)

    def to_keras(self, split: str | None = "train", with_mask: bool = False):
        """A ``keras.utils.PyDataset`` over ``split``; fit it with ``shuffle=False``."""
        from .keras_dataset import StreamPyDataset

        return StreamPyDataset(self, split, with_mask)

    def close(self) -> None:
        """Stop the reader threads; the stream can still be iterated afterwards."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
