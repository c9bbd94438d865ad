"""``make demo``'s job end to end, as a user runs it: quiet, and every step reports."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

NATIVE_LOG = re.compile(r"^[IWEF]\d{4} \d\d:|INFO:tensorflow|oneDNN|absl::InitializeLog", re.M)


def test_demo_runs_end_to_end_without_tensorflow_logs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "MLAAS4HEP_NB_TF"))}
    command = ["demo", "--out", str(tmp_path / "demo"), "--events", "2000", "--epochs", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "mlaas4hep_nb.cli", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert not NATIVE_LOG.findall(output), output[-3000:]
    assert re.search(r"validation AUC 0\.\d+", done.stdout)
    assert "largest difference served vs local" in done.stdout
    assert {"loss.png", "roc.png", "tth"} <= {p.name for p in (tmp_path / "demo").iterdir()}
