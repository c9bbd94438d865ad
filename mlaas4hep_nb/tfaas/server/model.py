"""A served model: a bundle's SavedModel signatures, params, labels and FeatureSpec."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from ...bundle import LABELS_FILE, MASK_SIGNATURE, read_params
from ..errors import RequestError
from .params_schema import ParamsError, check_params

if TYPE_CHECKING:
    from ...data.convert import Converter
    from .signatures import Signature

__all__ = ["BundleError", "ServedModel", "find_saved_model"]


def __dir__() -> list[str]:
    return __all__


class BundleError(ValueError):
    """A folder that is not a loadable bundle (no params.json, no SavedModel, bad signature)."""


def find_saved_model(folder: str | os.PathLike) -> Path | None:
    """``folder`` if it holds ``saved_model.pb``, else its only sub-folder that does."""
    folder = Path(folder)
    if (folder / "saved_model.pb").is_file():
        return folder
    found = [child for child in folder.iterdir() if (child / "saved_model.pb").is_file()]
    return found[0] if len(found) == 1 else None


def _is_number(value: object) -> bool:
    return type(value) is float or type(value) is int


class ServedModel:
    """A bundle loaded for serving.

    Parameters
    ----------
    path : the bundle folder (SavedModel + ``params.json`` + ``labels.txt``).
    name : the name it is served under; by default the folder's name.

    Raises
    ------
    BundleError
        If the folder has no readable ``params.json``, no loadable SavedModel,
        or a signature that does not take one ``[None, n]`` input.
    """

    def __init__(self, path: str | os.PathLike, name: str | None = None) -> None:
        from .frozen import frozen_graph_path, load_frozen
        from .signatures import load_signatures

        self.path = Path(path)
        self.name = name or self.path.name
        try:
            self.params = check_params(read_params(self.path))
        except ParamsError as err:
            msg = f"params.json of {self.name!r}: {err}"
            raise BundleError(msg) from None
        except (OSError, ValueError) as err:
            raise BundleError(str(err)) from None
        self.labels = self._read_labels()
        self.frozen_graph = frozen_graph_path(self.path, self.params)  # a TF1 bundle
        try:
            if self.frozen_graph is not None:
                signatures = load_frozen(self.frozen_graph, self.params)
            else:
                signatures = load_signatures(self.path)
        except Exception as err:  # TF raises many kinds for a bad or missing SavedModel
            what = "frozen graph" if self.frozen_graph is not None else "SavedModel"
            msg = f"bundle {self.name!r} has no loadable {what}: {type(err).__name__}: {err}"
            raise BundleError(msg) from None
        op = self.params.get("op")  # a string or None (check_params)
        self.signature_name = op if isinstance(op, str) and op in signatures else "serving_default"
        default = signatures.get(self.signature_name)
        if default is None:
            msg = f"the SavedModel of {self.name!r} has no serving_default signature"
            raise BundleError(msg)
        if len(default.inputs) != 1:
            msg = (
                f"the serving_default signature of {self.name!r} takes "
                f"{sorted(default.inputs)}; one [None, n] input is needed"
            )
            raise BundleError(msg)
        (self.input_name, tensor), *_ = default.inputs.items()
        if len(tensor.shape) not in (2, 4):
            msg = (
                f"the input of {self.name!r} has shape {tensor.shape}; "
                "[None, n] (or an image, [None, height, width, channels]) is needed"
            )
            raise BundleError(msg)
        # an image model: /image feeds it [1, height, width, channels], /json flat rows
        self.image_shape: tuple[int | None, int | None, int | None] | None = (
            tensor.shape[1:] if len(tensor.shape) == 4 else None
        )
        self.output_name = default.select(self.params.get("output_name"))
        self._default = default
        self.signatures = signatures
        features = self.params.get("features")
        width = tensor.shape[1] if self.image_shape is None else None
        if self.image_shape is not None and None not in self.image_shape:
            self._image_dims = cast("tuple[int, int, int]", self.image_shape)  # no None in it
            width = int(np.prod(self._image_dims))
            # the row models' predict stays as it is: no per-call branch
            self.predict = self._predict_images  # type: ignore[method-assign]
        self.n_features: int | None = (
            width if width is not None else len(features) if isinstance(features, list) else None
        )
        self._masked = self._mask_signature(signatures.get(MASK_SIGNATURE))
        self.spec = self._read_spec()
        self._converter: Converter | None = None

    def _read_labels(self) -> list[str]:
        labels = self.path / str(self.params.get("labels") or LABELS_FILE)
        if labels.resolve().parent != self.path.resolve() or not labels.is_file():
            return []
        return [line.strip() for line in labels.read_text(errors="replace").splitlines()]

    def _read_spec(self):
        spec = self.params.get("spec")
        if not isinstance(spec, Mapping):
            return None
        from ...data.spec import FeatureSpec

        try:
            return FeatureSpec.from_dict(spec)
        except (KeyError, TypeError, ValueError) as err:
            msg = f"the FeatureSpec in params.json of {self.name!r} is not valid: {err}"
            raise BundleError(msg) from None

    def _mask_signature(self, signature: Signature | None) -> Signature | None:
        if signature is None:
            return None
        masks = [name for name in signature.inputs if "mask" in name]
        if len(signature.inputs) != 2 or len(masks) != 1:
            return None
        signature.select(self.output_name)
        return signature

    @property
    def has_mask_signature(self) -> bool:
        return self._masked is not None

    @property
    def mask_input(self) -> str | None:
        """The name of the mask input of ``serving_with_mask``; None without that signature."""
        if self._masked is None:
            return None
        return next(name for name in self._masked.inputs if "mask" in name)

    @property
    def output_width(self) -> int | None:
        shape = self._default.outputs[self.output_name].shape
        return shape[-1] if shape else None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs ``[rows, k]`` for the float32 rows ``x`` ``[rows, n]`` (serving_default)."""
        return self._default(**{self.input_name: x})

    def _predict_images(self, x: np.ndarray) -> np.ndarray:
        """`predict` for a model of fixed-size images: rows of ``h * w * c`` pixels, or images."""
        return self._default(**{self.input_name: x.reshape(-1, *self._image_dims)})

    def predict_masked(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Outputs through ``serving_with_mask`` when the bundle has it, else serving_default."""
        mask_name = self.mask_input
        if self._masked is None or mask_name is None:
            return self.predict(x)
        input_name = next(name for name in self._masked.inputs if name != mask_name)
        return self._masked(**{input_name: x, mask_name: mask})

    def run_signature(self, name: str, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Outputs ``[rows, k]`` of the signature ``name`` for its inputs by name.

        The output is the served one (``output_name``) where the signature has
        it, else its first by name.
        """
        signature = self.signatures[name]
        if signature.output is None:
            signature.select(self.output_name)
        return signature(**arrays)

    def convert(self, events: object) -> tuple[np.ndarray, np.ndarray]:
        """``(X, mask)`` from raw events, padded and normalised as in training.

        Raises
        ------
        RequestError
            (400) if the bundle carries no FeatureSpec, or an event misses a
            branch or holds a value that is not a number (a list of numbers
            for a jagged branch).
        """
        if self.spec is None:
            raise RequestError(
                400, f"model {self.name!r} has no FeatureSpec in its params.json; send values"
            )
        if not isinstance(events, list) or not events:
            raise RequestError(400, "events must be a non-empty list of objects")
        if self._converter is None:
            from ...data.convert import Converter

            spec = self.params["spec"]
            normalize = self.params.get("normalize", spec.get("normalize", "minmax"))
            try:
                self._converter = Converter(self.spec, normalize)
            except ValueError as err:
                raise RequestError(400, f"model {self.name!r}: {err}") from None
        columns = {
            branch.name: _column(events, branch.name, branch.jagged, branch.fixed)
            for branch in self.spec.branches
            if not branch.jagged or branch.pad > 0
        }
        x, mask, _ = self._converter(columns)
        return x, mask

    def describe(self) -> dict:
        """Params as ``/models`` lists them, with what this server adds."""
        return {
            **self.params,
            "name": self.name,
            "n_features": self.n_features,
            "mask_signature": self.has_mask_signature,
        }


def _column(events: Sequence, branch: str, jagged: bool, fixed: int | None = None):
    """One branch of raw events as awkward: numbers, lists (jagged) or ``fixed``-long lists."""
    values = []
    listed = jagged or fixed is not None
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise RequestError(400, f"event {i} is not an object of branch values")
        if branch not in event:
            raise RequestError(400, f"event {i} has no branch {branch!r}")
        value = event[branch]
        ok = (
            isinstance(value, list)
            and all(_is_number(v) for v in value)
            and (fixed is None or len(value) == fixed)
            if listed
            else _is_number(value)
        )
        if not ok:
            kind = "a number"
            if listed:
                kind = "a list of numbers" if fixed is None else f"a list of {fixed} numbers"
            raise RequestError(400, f"event {i}: branch {branch!r} must be {kind}, not {value!r}")
        values.append(value)
    import awkward as ak

    if not jagged:
        return ak.Array(np.asarray(values, dtype=np.float64))  # [n] or [n, fixed]

    counts = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    content = np.fromiter((x for v in values for x in v), dtype=np.float64, count=int(offsets[-1]))
    layout = ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(content))
    return ak.Array(layout)
