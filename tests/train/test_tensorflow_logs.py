"""TensorFlow's start-up INFO logs stay out of users' output unless they asked for them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlaas4hep_nb.tensorflow_logs import without_chatter

SCRIPT = """
import mlaas4hep_nb
import keras, numpy as np
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
model.compile("adam", "mse")
model.fit(np.zeros((8, 3)), np.zeros(8), verbose=0)
import tensorflow as tf
tf.get_logger().info("an INFO line from TensorFlow's Python logger")
tf.get_logger().warning("a WARNING line from TensorFlow's Python logger")
print("done")
"""


def run(env_level: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "MLAAS4HEP_NB_TF"))}
    if env_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = env_level
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.slow
def test_no_native_info_lines_after_import_mlaas4hep_nb():
    done = run(None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "oneDNN" not in done.stderr
    assert "I0000" not in done.stderr
    assert "absl::InitializeLog" not in done.stderr
    assert "an INFO line" not in done.stderr + done.stdout
    assert "a WARNING line" in done.stderr  # warnings from Python still reach the user


@pytest.mark.slow
def test_a_users_own_level_is_respected():
    done = run("0")
    assert done.returncode == 0, done.stderr
    assert "oneDNN" in done.stderr  # the user asked for INFO lines


def test_only_info_and_warning_log_lines_are_dropped():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1795838460.449097    3394 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1795838460.484858    3394 cpu_feature_guard.cc:227] This TensorFlow binary\n"
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild.\n"
        "2021-03-20 10:51:37.771548: I tensorflow/compiler/jit/xla_cpu_device.cc:41] Not creating\n"
        "E0000 00:00:1795838460.5 1 cuda.cc:1] failed call to cuInit\n"
        "a line of the user's own\n"
    )
    assert without_chatter(text) == (
        "E0000 00:00:1795838460.5 1 cuda.cc:1] failed call to cuInit\na line of the user's own\n"
    )
