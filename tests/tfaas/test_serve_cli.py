"""``mlaas4hep-nb serve``, ``push`` and ``predict`` as processes: models persist across restarts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from support import free_port, wait_until_up

import mlaas4hep_nb as mn
from mlaas4hep_nb.bundle import write_bundle

CLI = [sys.executable, "-m", "mlaas4hep_nb.cli"]


def start(model_dir, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [*CLI, "serve", "--port", str(port), "--model-dir", str(model_dir), *extra]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/v2/health/ready", process, what="mlaas4hep-nb serve")
    except RuntimeError:
        process.kill()
        raise
    return process, url


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(30)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,), name="inputs")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    return write_bundle(model, tmp_path_factory.mktemp("cli") / "b"), model


def test_push_predict_and_restart(tmp_path, bundle):
    folder, model = bundle
    models = tmp_path / "models"
    x = np.random.default_rng(2).random((5, 4), dtype=np.float32)
    expected = np.asarray(model(x))
    process, url = start(models)
    try:
        for name in ("kept", "doomed"):
            pushed = subprocess.run(
                [*CLI, "push", str(folder), "--url", url, "--name", name],
                capture_output=True,
                text=True,
                check=True,
            )
            assert f"as {name!r}" in pushed.stdout
        rows = tmp_path / "rows.json"
        rows.write_text(json.dumps(x.tolist()))
        predicted = subprocess.run(
            [*CLI, "predict", str(rows), "--url", url, "--name", "kept"],
            capture_output=True,
            text=True,
            check=True,
        )
        np.testing.assert_allclose(json.loads(predicted.stdout), expected, atol=1e-5)
        mn.TFaaSClient(url).delete("doomed")
        missing = subprocess.run(
            [*CLI, "predict", str(rows), "--url", url, "--name", "nope"],
            capture_output=True,
            text=True,
        )
        assert missing.returncode == 2
        assert "unknown model" in missing.stderr
    finally:
        stop(process)

    # what a crash in the middle of a re-upload and an unfinished upload leave behind
    shutil.copytree(folder, models / f".old-{'0' * 32}-recovered")
    (models / ".upload-leftover" / "x").mkdir(parents=True)
    process, url = start(models)
    try:
        client = mn.TFaaSClient(url)
        assert client.models() == ["kept", "recovered"]
        np.testing.assert_allclose(client.predict("kept", x), expected, atol=1e-5)
        np.testing.assert_allclose(client.predict("recovered", x), expected, atol=1e-5)
        assert sorted(p.name for p in models.iterdir()) == [".lock", "kept", "recovered"]
    finally:
        stop(process)


def test_token_all_without_token_is_refused(tmp_path):
    done = subprocess.run(
        [*CLI, "serve", "--model-dir", str(tmp_path), "--token-all"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--token-all needs --token" in done.stderr


def test_two_workers_share_uploads_and_deletes(tmp_path, bundle):
    folder, model = bundle
    process, url = start(tmp_path / "models", "--workers", "2", "--token", "t")
    try:
        client = mn.TFaaSClient(url, token="t")
        client.upload(folder, name="shared")
        time.sleep(2.5)  # every worker scans the model dir each second
        x = np.ones((2, 4), dtype=np.float32)
        for _ in range(8):  # new connections: both workers answer some
            fresh = mn.TFaaSClient(url)
            np.testing.assert_allclose(fresh.predict("shared", x), np.asarray(model(x)), atol=1e-5)
            fresh.close()
        client.delete("shared")
        time.sleep(2.5)
        for _ in range(8):
            with pytest.raises(mn.tfaas.TFaaSError):
                mn.TFaaSClient(url).predict("shared", x)
    finally:
        stop(process)
