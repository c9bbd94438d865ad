"""Run the signatures of a SavedModel: in a TF session without spinning threads, or eagerly.

A served model is called a few hundred times a second with small batches.
TensorFlow's default thread pools spin while they wait for work, which on a
small machine takes the cores that the HTTP server and its clients need:
measured here, a 100-row call of the benchmark network costs about half the
CPU time in a session with ``disable_thread_spinning`` and its own small pools
as through the eager signature. The numbers are the same kernels' either way.
Calls go through a callable made once per signature, which skips
``Session.run``'s feed handling (a private TensorFlow hook, with a public
fallback: ``mlaas4hep_nb._compat.tensorflow``). A SavedModel that a session
cannot load is run eagerly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from ..._compat.tensorflow import session_callable
from ..errors import RequestError

__all__ = ["Signature", "load_signatures"]

log = logging.getLogger(__name__)


def __dir__() -> list[str]:
    return __all__


@dataclass(frozen=True)
class _Tensor:
    shape: tuple[int | None, ...]
    dtype: np.dtype
    graph_name: str = ""  # the graph tensor's name ("serving_default_inputs:0"), where known


class Signature:
    """One signature: named inputs and outputs (shape, dtype), callable on numpy arrays.

    Call `select` once to pick the output, then call the signature with the
    inputs as keyword arguments; it returns the output as ``[rows, k]``.
    """

    def __init__(
        self,
        inputs: dict[str, _Tensor],
        outputs: dict[str, _Tensor],
        bind: Callable[[str, list[str]], Callable[..., np.ndarray]],
    ) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self._bind = bind
        self._order = sorted(inputs)
        self._bound: dict[str, Callable[..., np.ndarray]] = {}
        self._call: Callable[..., np.ndarray] | None = None
        self.output: str | None = None

    def select(self, output: str | None) -> str:
        """Return the output named ``output`` if there is one, else the first by name."""
        self.output = output if output in self.outputs else sorted(self.outputs)[0]
        self._call = self.bound(self.output)
        return self.output

    def bound(self, output: str) -> Callable[..., np.ndarray]:
        """The callable fetching ``output``, made once (making one takes ~15 ms in a session)."""
        call = self._bound.get(output)
        if call is None:
            call = self._bound[output] = self._bind(output, self._order)
        return call

    def __call__(self, **arrays: np.ndarray) -> np.ndarray:
        # select() set _call; the None before it would fail in _run as a TypeError
        return self._run(self._call, arrays)  # type: ignore[arg-type]

    def fetch(self, output: str, **arrays: np.ndarray) -> np.ndarray:
        """Like calling the signature, for any of its outputs (``output``, a key of `outputs`)."""
        return self._run(self.bound(output), arrays)

    def _run(self, call: Callable[..., np.ndarray], arrays: dict[str, np.ndarray]) -> np.ndarray:
        import tensorflow as tf

        feeds = [np.asarray(arrays[name], dtype=self.inputs[name].dtype) for name in self._order]
        try:
            out = np.asarray(call(*feeds))
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as err:
            message = str(err).strip().splitlines()[0][:300]
            raise RequestError(400, f"the model rejected the input: {message}") from None
        return out.reshape(len(out), -1)


def _session_config():
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=min(os.cpu_count() or 1, 4),
        inter_op_parallelism_threads=1,
        use_per_session_threads=True,
        allow_soft_placement=True,
    )
    config.experimental.disable_thread_spinning = True
    return config


def _session_signatures(path: Path) -> dict[str, Signature]:
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    tags = list(saved.meta_graphs[0].meta_info_def.tags) if saved.meta_graphs else ["serve"]
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph, config=_session_config())
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)  # the v1 loader logs that it is deprecated, every time
    try:
        with graph.as_default():
            meta = tf.compat.v1.saved_model.loader.load(session, tags, str(path))
    finally:
        tf_log.setLevel(level)

    def tensors(infos) -> dict[str, _Tensor]:
        return {
            key: _Tensor(
                tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim),
                np.dtype(tf.as_dtype(info.dtype).as_numpy_dtype),
                info.name,
            )
            for key, info in infos.items()
        }

    signatures = {}
    for key, definition in meta.signature_def.items():
        infos = [*definition.inputs.values(), *definition.outputs.values()]
        if not definition.outputs or any(info.dtype == 0 for info in infos):
            continue  # e.g. __saved_model_init_op, which only restores the variables

        def bind(output: str, order: list[str], definition=definition):
            feeds = [definition.inputs[name].name for name in order]
            fetch = definition.outputs[output].name
            return session_callable(session, feeds, fetch)

        signatures[key] = Signature(tensors(definition.inputs), tensors(definition.outputs), bind)
    return signatures


def _eager_signatures(path: Path) -> dict[str, Signature]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signatures = {}
    for key, function in loaded.signatures.items():
        _, specs = function.structured_input_signature
        outputs = function.structured_outputs
        if not isinstance(outputs, dict) or not outputs:
            continue

        def bind(output: str, order: list[str], function=function):
            def call(*arrays: np.ndarray, _variables=loaded) -> np.ndarray:
                # _variables: the loaded object owns the variables the signature reads
                tensors = {name: tf.constant(a) for name, a in zip(order, arrays, strict=True)}
                return function(**tensors)[output].numpy()

            return call

        def tensor(spec) -> _Tensor:
            dims = () if spec.shape.rank is None else tuple(spec.shape.as_list())
            return _Tensor(dims, np.dtype(spec.dtype.as_numpy_dtype))

        signatures[key] = Signature(
            {name: tensor(spec) for name, spec in specs.items()},
            {name: tensor(spec) for name, spec in outputs.items()},
            bind,
        )
    return signatures


def _probe(signatures: dict[str, Signature]) -> None:
    """Call one signature once on a row of zeros, so that a broken session fails now.

    The TF1 loader can load a SavedModel whose functions then miss their
    variables (a Keras 3 model written by ``tf.saved_model.save``): the
    first request would fail. The variables are the session's, so one call
    tells for all signatures (the served one first, then by name; its
    callable is kept for serving). Signatures with inputs of unknown size or
    of other than numbers are not called.
    """
    for key in sorted(signatures, key=lambda key: (key != "serving_default", key)):
        signature = signatures[key]
        tensors = [signature.inputs[name] for name in signature._order]
        if not tensors or any(
            len(t.shape) < 1 or None in t.shape[1:] or t.dtype.kind not in "biuf" for t in tensors
        ):
            continue
        call = signature.bound(sorted(signature.outputs)[0])
        # t.shape[1:] holds no None: such signatures were skipped above
        call(
            *[np.zeros((1, *cast("tuple[int, ...]", t.shape[1:])), dtype=t.dtype) for t in tensors]
        )
        return


def load_signatures(path: str | os.PathLike) -> dict[str, Signature]:
    """The signatures of the SavedModel in ``path``, by name (session first, eager else)."""
    path = Path(path)
    try:
        signatures = _session_signatures(path)
        _probe(signatures)
        return signatures
    except Exception as err:
        log.info("loading %s eagerly (a session could not: %s)", path, err)
    return _eager_signatures(path)
