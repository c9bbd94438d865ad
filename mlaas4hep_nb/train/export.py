"""The serving graph of a trained model: X in, probabilities out, the mask derived inside.

A served model gets only X (``inputs``, float32 ``[None, n_features]``). For
a model trained on X and the mask, the exported graph derives the mask from
X with the spec's layout. Flat features are always real values. For the
slots of a jagged branch there are two rules:

- ``counter``: the branch has a counter among the flat features (``nJet``
  for ``Jet_pt``, NanoAOD's naming) and slot ``i`` is real when ``i <
  nJet``; the counter's value is recovered from its normalised feature. This
  rule is exact. It is used only where it reproduces the true mask on
  validation data (`MaskRule.fit`).
- ``nonzero``: otherwise a slot is real where its value is not 0 (padded
  slots are 0 in X). Edge case: a real value that normalises to exactly 0
  (the branch minimum under ``minmax``, e.g. a charge of -1, or the mean
  under ``standard``) looks like padding.

A server that knows the true mask (it pads raw events itself) calls the
second signature, ``serving_with_mask(inputs, mask)``, with mask float32
(1 = real), which reproduces training exactly for any branch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from ..bundle import MASK_SIGNATURE, export_saved_model
from ..data.convert import scaling

if TYPE_CHECKING:
    from ..data.spec import BranchSpec, FeatureSpec
    from .models import ModelLayout

__all__ = ["MaskRule", "ServingExport"]


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class _Jagged:
    """Where a jagged branch sits in X and, with the counter rule, how to read its counter."""

    name: str
    start: int
    pad: int
    counter: int | None = None  # the counter's column in X
    counter_name: str = ""
    width: float = 1.0  # raw counter = X[:, counter] * width + offset
    offset: float = 0.0


def _counter_candidate(branch: BranchSpec, spec: FeatureSpec) -> BranchSpec | None:
    """The flat branch ``n<Collection>`` counting the entries of ``<Collection>_<field>``."""
    name = "n" + branch.name.split("_", 1)[0]
    flat = [b for b in spec.branches if b.name == name and not b.jagged]
    return flat[0] if flat and "_" in branch.name else None


class MaskRule:
    """How the mask is derived from X at serving time, one rule per jagged branch.

    Parameters
    ----------
    spec : the FeatureSpec the model was trained with.
    normalize : the stream's normalisation (to read counters back from X).
    counters : the jagged branches that use the ``counter`` rule.
    """

    def __init__(self, spec: FeatureSpec, normalize: str | None, counters: Iterable[str] = ()):
        counters = set(counters)
        starts = np.cumsum([0] + [b.pad for b in spec.branches])[:-1]
        column = dict(zip((b.name for b in spec.branches), starts.tolist(), strict=True))
        self.n_features = spec.n_features
        self.flat = np.ones(spec.n_features, dtype=bool)
        self.jagged: list[_Jagged] = []
        for branch, start in zip(spec.branches, starts.tolist(), strict=True):
            if not branch.jagged:
                continue
            self.flat[start : start + branch.pad] = False
            counter = _counter_candidate(branch, spec) if branch.name in counters else None
            if counter is None:
                self.jagged.append(_Jagged(branch.name, start, branch.pad))
                continue
            offset, width = scaling(counter, normalize)
            # a constant counter is 0 in X: its raw value is the spec's minimum
            if not width:
                offset = counter.min or 0.0
            self.jagged.append(
                _Jagged(
                    branch.name,
                    start,
                    branch.pad,
                    column[counter.name],
                    counter.name,
                    width,
                    offset,
                )
            )

    @classmethod
    def fit(
        cls,
        spec: FeatureSpec,
        normalize: str | None,
        samples: Iterable[tuple[np.ndarray, np.ndarray]],
    ) -> MaskRule:
        """Use the counter rule for each branch where it gives the true mask on ``samples``.

        ``samples`` are ``(X, mask)`` pairs as the stream makes them.
        """
        candidates = {b.name for b in spec.branches if b.jagged and _counter_candidate(b, spec)}
        trial = cls(spec, normalize, candidates)
        agree = set(candidates)
        seen = 0
        for x, mask in samples:
            derived = trial.numpy(x)
            seen += len(x)
            for part in trial.jagged:
                cols = slice(part.start, part.start + part.pad)
                if part.name in agree and not np.array_equal(derived[:, cols], mask[:, cols]):
                    agree.discard(part.name)
        return cls(spec, normalize, agree if seen else ())

    def describe(self) -> dict[str, str]:
        """Branch -> rule, for ``params.json``: ``"counter nJet"`` or ``"nonzero"``."""
        return {
            part.name: "nonzero" if part.counter is None else f"counter {part.counter_name}"
            for part in self.jagged
        }

    def numpy(self, x: np.ndarray) -> np.ndarray:
        """The mask the serving graph derives from ``x`` (the same float32 arithmetic)."""
        x = np.asarray(x, dtype=np.float32)
        mask = (x != 0) | self.flat
        for part in self.jagged:
            if part.counter is None:
                continue
            count = np.round(x[:, part.counter] * np.float32(part.width) + np.float32(part.offset))
            mask[:, part.start : part.start + part.pad] = np.arange(part.pad) < count[:, None]
        return mask

    def tensor(self, x: tf.Tensor) -> tf.Tensor:
        """The same mask in the graph."""
        columns = [tf.logical_or(tf.not_equal(x, 0.0), tf.constant(self.flat))]
        if not any(part.counter is not None for part in self.jagged):
            return columns[0]
        pieces, done = [], 0
        for part in self.jagged:
            if part.counter is None:
                continue
            pieces.append(columns[0][:, done : part.start])
            count = tf.round(x[:, part.counter] * part.width + part.offset)
            slots = tf.range(part.pad, dtype=tf.float32)
            pieces.append(slots[tf.newaxis, :] < count[:, tf.newaxis])
            done = part.start + part.pad
        pieces.append(columns[0][:, done:])
        return tf.concat(pieces, axis=1)


class ServingExport:
    """What `mlaas4hep_nb.bundle.write_bundle` exports: the model behind its signatures.

    ``serving_default`` (and the upstream TFaaS signature, see `bundle`) take
    ``inputs`` and return the probabilities, the mask derived by ``rule``;
    ``serving_with_mask`` takes ``inputs`` and ``mask``. For a model without
    a mask input, the second signature ignores the mask.
    """

    def __init__(self, model: keras.Model, layout: ModelLayout, rule: MaskRule) -> None:
        self.model = model
        self.layout = layout
        self.rule = rule

    def _call(self, inputs, mask):
        if not self.layout.takes_mask:
            return self.model(inputs, training=False)
        return self.model([inputs, tf.cast(mask, tf.float32)], training=False)

    def export(
        self, filepath: str | os.PathLike, format: str = "tf_saved_model", verbose: bool = False
    ) -> None:
        """Write the SavedModel (the ``model.export`` interface that ``write_bundle`` calls)."""
        if format != "tf_saved_model":
            msg = f"only the tf_saved_model format is supported, not {format!r}"
            raise ValueError(msg)
        n = self.rule.n_features

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, n], tf.float32, name="inputs"),
                tf.TensorSpec([None, n], tf.float32, name="mask"),
            ]
        )
        def serve_with_mask(inputs, mask):
            return self._call(inputs, mask)

        export_saved_model(
            filepath,
            self.model,
            lambda inputs: self._call(inputs, self.rule.tensor(inputs)),
            n,
            extra={MASK_SIGNATURE: serve_with_mask},
        )
