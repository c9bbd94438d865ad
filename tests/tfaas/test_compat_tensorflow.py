"""The hook into TensorFlow's private Session API: it fits the installed TensorFlow, or falls back.

When one of these fails after a TensorFlow upgrade, the message names the
hook and what changed: adapt ``mlaas4hep_nb/_compat/tensorflow.py`` (the
served models meanwhile run through the public ``Session.make_callable``).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf

from mlaas4hep_nb._compat import tensorflow as hook
from mlaas4hep_nb.tfaas.server.frozen import load_frozen

CHANGED = f"TensorFlow {tf.__version__} changed what {hook.HOOK} uses:"
X = np.arange(6, dtype=np.float32).reshape(2, 3)


@pytest.fixture
def fresh_check():
    """The hook is checked once per process: forget that answer before and after."""
    hook._hook_fits.cache_clear()
    yield
    hook._hook_fits.cache_clear()


@pytest.fixture
def graph() -> tf.Graph:
    """``y = 2 x + 1`` on ``x`` ``[None, 3]``, a TF1 graph."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None, 3), name="x")
        tf.identity(2 * x + 1, name="y")
    return graph


@pytest.fixture
def private_calls(monkeypatch) -> list[object]:
    """The calls of the hook's private method, recorded (it still runs)."""
    calls = []
    private = tf.compat.v1.Session._make_callable_from_options

    def spy(self, options):
        calls.append(options)
        return private(self, options)

    monkeypatch.setattr(tf.compat.v1.Session, "_make_callable_from_options", spy)
    return calls


def test_the_installed_tensorflow_has_all_that_the_hook_uses():
    gaps = hook.missing()
    assert gaps == [], f"{CHANGED} {'; '.join(gaps)}"


def test_the_hook_runs_a_real_session(fresh_check, graph, private_calls):
    with tf.compat.v1.Session(graph=graph) as session:
        call = hook.session_callable(session, ["x:0"], "y:0")
        np.testing.assert_array_equal(call(X), 2 * X + 1, err_msg=f"{CHANGED} its callable")
    assert len(private_calls) == 1, f"{CHANGED} it was not taken though it fits"
    assert list(private_calls[0].feed) == ["x:0"]
    assert list(private_calls[0].fetch) == ["y:0"]


def test_the_fallback_is_public_and_warns_once(
    fresh_check, graph, private_calls, monkeypatch, caplog, tmp_path
):
    monkeypatch.setattr(hook, "missing", lambda: [hook.HOOK])
    with caplog.at_level(logging.WARNING, logger=hook.__name__):
        with tf.compat.v1.Session(graph=graph) as session:
            first = hook.session_callable(session, ["x:0"], "y:0")
            second = hook.session_callable(session, ["x:0"], "y:0")
            np.testing.assert_array_equal(first(X), 2 * X + 1)
            np.testing.assert_array_equal(second(X[:1]), 2 * X[:1] + 1)
        # a frozen graph is served through the same callables
        frozen = tmp_path / "tf_model.pb"
        frozen.write_bytes(graph.as_graph_def().SerializeToString())
        signature = load_frozen(frozen, {"input_node": "x", "output_node": "y"})["serving_default"]
        signature.select(None)
        np.testing.assert_array_equal(signature(x=X), 2 * X + 1)
    assert private_calls == []
    warnings = [r for r in caplog.records if r.name == hook.__name__]
    assert len(warnings) == 1
    assert hook.HOOK in warnings[0].getMessage()
