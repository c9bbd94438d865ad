"""TensorFlow: a TF1 session callable that skips ``Session.run``'s feed handling.

The hook
--------
``Session._make_callable_from_options`` (private) with a ``CallableOptions``
message (``tensorflow.core.protobuf.config_pb2``, which has no public name)
makes a callable that runs the step directly: about 40 us a call, against
about 100 us through the public ``Session.make_callable`` with feeds, which
goes through ``Session.run``'s feed handling. The served models' calls take
this path (``mlaas4hep_nb.tfaas.server.signatures`` and ``.frozen``).
`session_callable` uses the hook when the installed TensorFlow has all it
uses (`missing`, checked once per process), else ``Session.make_callable``,
logging one warning that names `HOOK`. Either way the callable is made once
per model signature; a call goes straight to it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["HOOK", "missing", "session_callable"]

log = logging.getLogger(__name__)

HOOK = "tf.compat.v1.Session._make_callable_from_options"
"""The hook's name, as the fallback's warning and the tests' failures give it."""

CALLABLE_OPTIONS_FIELDS = ("feed", "fetch")


def __dir__() -> list[str]:
    return __all__


def missing() -> list[str]:
    """What the hook uses that the installed TensorFlow lacks; [] when it has it all."""
    import tensorflow as tf

    gaps = []
    if not callable(getattr(tf.compat.v1.Session, "_make_callable_from_options", None)):
        gaps.append("tf.compat.v1.Session._make_callable_from_options")
    try:
        from tensorflow.core.protobuf.config_pb2 import CallableOptions
    except ImportError:
        gaps.append("tensorflow.core.protobuf.config_pb2.CallableOptions")
    else:
        fields = CallableOptions.DESCRIPTOR.fields_by_name
        gaps += [
            f"CallableOptions.{name}" for name in CALLABLE_OPTIONS_FIELDS if name not in fields
        ]
    return gaps


@functools.cache
def _hook_fits() -> bool:
    gaps = missing()
    if gaps:
        log.warning(
            "TensorFlow changed: the hook %s does not fit it (missing: %s); model calls go "
            "through the public Session.make_callable (slower per call)",
            HOOK,
            "; ".join(gaps),
        )
    return not gaps


def session_callable(session, feeds: list[str], fetch: str) -> Callable[..., np.ndarray]:
    """A callable running the tensor ``fetch`` from the tensors ``feeds`` in ``session``.

    It takes one array per feed, in order, and returns the fetched array.
    """
    if not _hook_fits():
        return session.make_callable(fetch, feeds)
    from tensorflow.core.protobuf import config_pb2

    options = config_pb2.CallableOptions(feed=feeds, fetch=[fetch])
    run = session._make_callable_from_options(options)

    def call(*arrays: np.ndarray) -> np.ndarray:
        return run(*arrays)[0]

    return call
