"""Turn columns of flat and jagged values into a padded, normalised float32 matrix."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import awkward as ak
import numpy as np

from .memory import mapped_zeros

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from .spec import BranchSpec, FeatureSpec

__all__ = ["NORMALIZATIONS", "Block", "Converter", "flat_values", "jagged_parts", "scaling"]

NORMALIZATIONS = ("minmax", "standard", None)


def __dir__() -> list[str]:
    return __all__


def _has_missing(form: ak.forms.Form) -> bool:
    return form.is_option or (hasattr(form, "content") and _has_missing(form.content))


def _without_missing(array: ak.Array) -> ak.Array:
    # computed columns (max of an empty list, ...) may hold None: it becomes NaN, then masked
    return ak.fill_none(array, np.nan, axis=None) if _has_missing(array.layout.form) else array


def flat_values(array: ak.Array) -> NDArray[Any]:
    """A flat column as numpy, None as NaN."""
    return cast("NDArray[Any]", ak.to_numpy(_without_missing(array)))


def jagged_parts(array: ak.Array) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[Any]]:
    """Counts, start offsets into ``content``, and the flat content of a one-level jagged array."""
    array = _without_missing(array)
    layout = array.layout
    if isinstance(layout, ak.contents.ListOffsetArray) and isinstance(
        layout.content, ak.contents.NumpyArray
    ):
        offsets = np.asarray(layout.offsets.data, dtype=np.int64)
        return np.diff(offsets), offsets[:-1], np.asarray(layout.content.data)
    counts = ak.to_numpy(ak.num(array, axis=1)).astype(np.int64, copy=False)
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return counts, starts, ak.to_numpy(ak.flatten(array, axis=1))


def scaling(branch: BranchSpec, normalize: str | None) -> tuple[float, float]:
    """Offset and width so that ``(x - offset) / width`` is normalised; width 0: constant.

    A constant (or never seen) branch carries no information: it maps to 0.
    For ``minmax`` the offset is the minimum rounded to float32 and the width
    the float32 difference of the rounded maximum and minimum: values are
    rounded to float32 the same way before the same float32 subtraction, so
    the maximum maps to exactly 1 and nothing lands outside [0, 1] (with the
    float64 width, a float64 or large integer maximum gave 1.0000001).
    """
    offset: float | None
    width: float | None
    if normalize == "minmax":
        if branch.min is None or branch.max is None:
            return 0.0, 0.0
        low = np.float32(branch.min)
        offset, width = float(low), float(np.float32(branch.max) - low)
    elif normalize == "standard":
        offset, width = branch.mean, branch.std
    else:
        return 0.0, 1.0
    if offset is None or width is None or not width > 0:
        return 0.0, 0.0
    return offset, width


class _Slots:
    """Where the values of jagged branches that share one counter go in the flat matrix.

    ``source`` indexes the kept values in the content, ``target`` their places
    in the raveled ``[n, width]`` matrix (before adding the branch's column).
    """

    def __init__(
        self, counts: NDArray[np.int64], starts: NDArray[np.int64], pad: int, n_columns: int
    ) -> None:
        self.counts, self.starts, self.pad, self.n_columns = counts, starts, pad, n_columns
        kept = np.minimum(counts, pad)
        first = np.zeros(len(kept), dtype=np.int64)
        np.cumsum(kept[:-1], out=first[1:])
        slot = np.arange(int(kept.sum()), dtype=np.int64) - np.repeat(first, kept)
        self.source = np.repeat(starts, kept) + slot
        self.target = np.repeat(np.arange(len(kept), dtype=np.int64) * n_columns, kept) + slot

    def fits(self, counts: NDArray[np.int64], starts: NDArray[np.int64], pad: int) -> bool:
        """Whether another branch has the same layout (Jet_eta after Jet_pt)."""
        return (
            pad == self.pad
            and np.array_equal(counts, self.counts)
            and np.array_equal(starts, self.starts)
        )


@dataclass
class Block:
    """Rows ``[start, stop)`` of a converted matrix: X, mask, and NaN/inf counts per row."""

    start: int
    stop: int
    x: NDArray[np.float32]
    mask: NDArray[np.bool_]
    nonfinite: dict[str, NDArray[np.int64]] = field(default_factory=dict)


class Converter:
    """Fill ``(X, mask)`` from columns as a `FeatureSpec` lays them out.

    Flat branches take one column, a jagged branch ``pad`` columns (padded
    slots are 0 in X and False in the mask), a fixed-size array branch its
    ``pad`` first values. NaN and inf are replaced by 0 and masked; they are
    counted per branch and per row (``{branch: counts [n]}``, only branches
    that have some), so a caller can count them in any subset of the rows.

    `fill` converts some of the branches into row blocks made by `blocks`: a
    reader can convert a few branches at a time (their raw arrays are then
    dropped) into blocks that a stream frees one by one.
    """

    def __init__(self, spec: FeatureSpec, normalize: str | None = "minmax") -> None:
        if normalize not in NORMALIZATIONS:
            msg = f"normalize must be one of {NORMALIZATIONS}, not {normalize!r}"
            raise ValueError(msg)
        self.spec = spec
        self.normalize = normalize
        starts = np.cumsum([0] + [b.pad for b in spec.branches])[:-1].tolist()
        self._layout = {
            branch.name: (branch, start, scaling(branch, normalize))
            for branch, start in zip(spec.branches, starts, strict=True)
        }

    def __call__(
        self, columns: Mapping[str, ak.Array]
    ) -> tuple[NDArray[np.float32], NDArray[np.bool_], dict[str, NDArray[np.int64]]]:
        n = len(next(iter(columns.values()))) if columns else 0
        (block,) = self.blocks([0, n])
        self.fill([block], {b.name: columns[b.name] for b in self.spec.branches if b.pad})
        return block.x, block.mask, block.nonfinite

    def blocks(self, edges: Sequence[int]) -> list[Block]:
        """Empty blocks (zeros, all masked) of rows ``[edges[i], edges[i + 1])``."""
        n_columns = self.spec.n_features
        return [
            Block(
                start,
                stop,
                # every branch writes to every row: a block's pages are soon all written
                mapped_zeros((stop - start, n_columns), np.float32, huge=True),
                mapped_zeros((stop - start, n_columns), bool, huge=True),
            )
            for start, stop in itertools.pairwise(edges)
        ]

    def fill(self, blocks: Sequence[Block], columns: Mapping[str, ak.Array]) -> None:
        """Convert the spec's branches found in ``columns`` (all rows of ``blocks``) into them.

        Columns in the spec's order let branches that share a counter share its layout.
        """
        n = blocks[-1].stop if blocks else 0
        n_columns = self.spec.n_features
        slots: _Slots | None = None
        for name, column in columns.items():
            if name not in self._layout:
                continue
            branch, start, (offset, width) = self._layout[name]
            if branch.pad == 0:
                continue
            if branch.jagged:
                counts, starts, content = jagged_parts(column)
                # branches sharing a counter (Jet_pt, Jet_eta, ...) share one slot layout
                if slots is None or not slots.fits(counts, starts, branch.pad):
                    slots = _Slots(counts, starts, branch.pad, n_columns)
                values = content[slots.source].astype(np.float32)
            else:
                # flat: [n]; a fixed-size array: [n, size], its first pad values kept
                values = flat_values(column).astype(np.float32)
                if values.ndim == 2:
                    values = values[:, : branch.pad]
            if self.normalize is not None:
                # subtract then divide in float32, as scaling() rounds: minmax stays in [0, 1]
                values -= np.float32(offset)
                if width:
                    values /= np.float32(width)
                else:
                    values *= np.float32(0.0)
            bad = ~np.isfinite(values)
            if bad.any():
                values[bad] = 0.0
                per_row = _per_row(bad, slots if branch.jagged else None, n)
                for block in blocks:
                    block.nonfinite[name] = per_row[block.start : block.stop].copy()
            if branch.jagged:
                _scatter(blocks, cast("_Slots", slots), start, values, bad)  # set above
            else:
                values, good = values.reshape(n, branch.pad), ~bad.reshape(n, branch.pad)
                for block in blocks:
                    block.x[:, start : start + branch.pad] = values[block.start : block.stop]
                    block.mask[:, start : start + branch.pad] = good[block.start : block.stop]


def _scatter(
    blocks: Sequence[Block],
    slots: _Slots,
    start: int,
    values: NDArray[np.float32],
    bad: NDArray[np.bool_],
) -> None:
    """Put a jagged branch's kept values in their places (rows ascend in ``slots.target``)."""
    width = slots.n_columns
    cuts = np.searchsorted(slots.target, [block.start * width for block in blocks[1:]])
    for block, (low, high) in zip(
        blocks, itertools.pairwise([0, *cuts.tolist(), len(values)]), strict=True
    ):
        target = slots.target[low:high] + (start - block.start * width)
        block.x.reshape(-1)[target] = values[low:high]
        block.mask.reshape(-1)[target] = ~bad[low:high]


def _per_row(bad: NDArray[np.bool_], slots: _Slots | None, n: int) -> NDArray[np.int64]:
    """How many of a branch's values are non-finite in each of the ``n`` rows."""
    if slots is not None:
        return np.bincount(slots.target[bad] // slots.n_columns, minlength=n).astype(np.int64)
    return bad.sum(axis=1, dtype=np.int64) if bad.ndim == 2 else bad.astype(np.int64)
