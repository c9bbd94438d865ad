"""Faults, with real ``mlaas4hep-nb serve`` processes: bad folders, and SIGKILL mid-upload.

A server killed at any step of an upload serves, once restarted, every model
it served before, each wholly its old or wholly its new version, and leaves
no staging folders behind. With ``--workers 2`` the other worker goes on
serving every model while uvicorn's supervisor starts a new one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import requests
from support import free_port

from mlaas4hep_nb.bundle import write_bundle
from mlaas4hep_nb.tfaas.pack import pack_bundle
from mlaas4hep_nb.tfaas.server import staging
from mlaas4hep_nb.tfaas.server.testhooks import ENV_PAUSE

CLI = [sys.executable, "-m", "mlaas4hep_nb.cli"]
GZIP_TAR = {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}
STARTED = "Application startup complete"
X = np.random.default_rng(5).random((16, 4), dtype=np.float32)


def wait_for(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    """``mlaas4hep-nb serve`` in a process of its own; its log goes to a file."""

    def __init__(self, model_dir: Path, log: Path, *extra: str, pause: str = "") -> None:
        self.model_dir = model_dir
        self.log = log
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, ENV_PAUSE: pause}
        port = self.url.rsplit(":", 1)[1]
        command = [*CLI, "serve", "--port", port, "--model-dir", str(model_dir), *extra]
        with log.open("a") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(self._ready, f"the server in {model_dir} to answer")
        except AssertionError:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited with {self.process.returncode}: {self.text()}")
        try:
            return requests.get(self.url + "/v2/health/ready", timeout=1).ok
        except requests.ConnectionError:
            return False

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_started(self, workers: int) -> None:
        """Wait until ``workers`` worker processes (in all) have completed their start-up."""
        wait_for(lambda: self.text().count(STARTED) >= workers, f"{workers} started workers")

    def get(self, path: str) -> requests.Response:
        with requests.Session() as fresh:  # a new connection: any worker may answer
            return fresh.get(self.url + path, timeout=30)

    def predict(self, name: str) -> np.ndarray:
        with requests.Session() as fresh:
            answer = fresh.post(
                self.url + "/json", json={"values": X.tolist(), "model": name}, timeout=30
            )
        assert answer.status_code == 200, (name, answer.status_code, answer.text)
        return np.asarray(answer.json(), dtype=np.float32)

    def upload(self, folder: Path, name: str) -> requests.Response:
        """Upload once: no retries, so that a killed upload is never sent again."""
        _, data = pack_bundle(folder, name)
        return requests.post(self.url + "/upload", data=data, headers=GZIP_TAR, timeout=120)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def debris(model_dir: Path) -> list[str]:
    """The store's working folders (``.upload-*``, ``.old-*``, ...) left in ``model_dir``."""
    return sorted(p.name for p in model_dir.iterdir() if p.name.startswith(".") and p.is_dir())


def make_bundle(folder: Path, seed: int) -> tuple[Path, keras.Model]:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,), name="inputs")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    return write_bundle(model, folder), model


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, tuple[Path, keras.Model]]:
    """Three bundles of one input width with different weights: old, new and another model."""
    root = tmp_path_factory.mktemp("faults")
    return {name: make_bundle(root / name, seed) for name, seed in (("A", 1), ("B", 2), ("K", 3))}


def populate(model_dir: Path, bundles: dict) -> None:
    """``m`` (version A), ``keep`` and ``ref_b`` (version B), as a server left them on disk."""
    for name, which in (("m", "A"), ("keep", "K"), ("ref_b", "B")):
        shutil.copytree(bundles[which][0], model_dir / name)


def reference(server: Server, bundles: dict) -> dict[str, np.ndarray]:
    """What the server answers for the old and new version of ``m`` and for ``keep``."""
    answers = {"A": server.predict("m"), "B": server.predict("ref_b"), "K": server.predict("keep")}
    for which, y in answers.items():
        np.testing.assert_allclose(y, np.asarray(bundles[which][1](X)), atol=1e-5)
    assert not np.allclose(answers["A"], answers["B"], atol=1e-3)
    return answers


def kill_at(server: Server, flag: Path, bundles: dict) -> tuple[int, list[str]]:
    """Upload version B as ``m`` and kill the process paused at the step: its PID, what it left."""
    failures = []

    def upload() -> None:
        try:
            failures.append(server.upload(bundles["B"][0], "m").status_code)
        except requests.RequestException as err:  # the connection dies with the process
            failures.append(type(err).__name__)

    thread = threading.Thread(target=upload)
    thread.start()
    pid = int(wait_for(lambda: flag.is_file() and flag.read_text(), "the paused step"))
    state = sorted(p.name.split("-")[0] for p in server.model_dir.iterdir())
    os.kill(pid, signal.SIGKILL)
    thread.join(60)
    assert len(failures) == 1
    assert failures[0] != 200  # the upload did not complete
    return pid, state


# --- bad folders in the model dir --------------------------------------------------------------


def write_bad_folders(model_dir: Path, good: Path) -> dict[str, str]:
    """Bundles that must not load, each with what its reason in ``/status`` says."""
    params = json.loads((good / "params.json").read_text())
    cases = {
        "big_int": ({**params, "upstream": 2**64}, "64-bit"),
        "op_list": ({**params, "op": []}, "'op' must be"),
        "output_dict": ({**params, "output_name": {"a": 1}}, "'output_name' must be"),
        "not_json": ("{nope", "not valid JSON"),
        "too_deep": ("[" * 100_000 + "]" * 100_000, "too deeply"),
        "corrupt_model": (params, "no loadable SavedModel"),
        "no_params": (None, "no params.json"),
    }
    for name, (content, _) in cases.items():
        folder = model_dir / name
        shutil.copytree(good, folder)
        if content is None:
            (folder / "params.json").unlink()
        else:
            text = content if isinstance(content, str) else json.dumps(content)
            (folder / "params.json").write_text(text)
    pb = model_dir / "corrupt_model" / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    return {name: why for name, (_, why) in cases.items()}


def test_bad_folders_are_skipped_and_reported(tmp_path, bundles):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(bundles["K"][0], models / "good")
    expected = write_bad_folders(models, bundles["K"][0])
    (models / "README").write_text("not a model")
    server = Server(models, tmp_path / "serve.log")
    try:
        assert [m["name"] for m in server.get("/models").json()] == ["good"]
        assert server.get("/params/good").status_code == 200
        np.testing.assert_allclose(server.predict("good"), bundles["K"][1](X), atol=1e-5)
        skipped = server.get("/status").json()["skipped"]
        assert sorted(skipped) == sorted(expected)
        for name, why in expected.items():
            assert why in skipped[name], (name, skipped[name])
            assert f"not serving {models.resolve() / name}" in server.text()
        # a skipped folder can be deleted, or replaced by a good upload
        assert requests.delete(server.url + "/delete/big_int").status_code == 200
        assert not (models / "big_int").exists()
        assert server.upload(bundles["A"][0], "op_list").status_code == 200
        np.testing.assert_allclose(server.predict("op_list"), bundles["A"][1](X), atol=1e-5)
        assert sorted(server.get("/status").json()["skipped"]) == sorted(
            set(expected) - {"big_int", "op_list"}
        )
    finally:
        server.stop()


def test_workers_skip_bad_folders_that_appear_while_they_run(tmp_path, bundles):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(bundles["K"][0], models / "good")
    server = Server(models, tmp_path / "serve.log", "--workers", "2")
    try:
        server.wait_started(2)
        incoming = tmp_path / "incoming"
        incoming.mkdir()
        expected = write_bad_folders(incoming, bundles["K"][0])
        for folder in incoming.iterdir():
            folder.rename(models / folder.name)  # as complete folders, the way uploads arrive
        time.sleep(3)  # each worker scans the model dir every second
        for _ in range(8):  # fresh connections: both workers answer some
            status = server.get("/status").json()
            assert status["models"] == ["good"]
            assert sorted(status["skipped"]) == sorted(expected)
            np.testing.assert_allclose(server.predict("good"), bundles["K"][1](X), atol=1e-5)
        assert server.text().count(STARTED) == 2  # no worker died or restarted
    finally:
        server.stop()


def test_start_up_tidies_only_what_dead_or_old_owners_left(tmp_path, bundles):
    models = tmp_path / "models"
    models.mkdir()
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()  # its PID is free now
    host = staging.staging_prefix().split("-")[2]  # this host, as owners name it
    now, me, tag = int(time.time()), os.getpid(), "0" * 12
    folders = {
        f".upload-{me}-{host}-{now}-live": True,  # this test process is alive
        f".upload-{me}-elsewhere-{now}-other_host": True,  # its PID cannot be asked
        f".upload-{done.pid}-{host}-{now}-dead": False,
        f".upload-{me}-{host}-{now - 7200}-too_old": False,  # PIDs are reused
        f".upload-{me}-elsewhere-{now - 7200}-old_other_host": False,
        f".deleted-{me}-{host}-{now}-{tag}-gone": False,  # a delete: never put back
        f".old-{me}-{host}-{now}-{tag}-keep": False,  # its swap is over: keep is there
        ".upload-legacy": False,  # older versions' names have no owner
        ".not-ours": True,
    }
    for name in folders:
        (models / name / "sub").mkdir(parents=True)
    shutil.copytree(bundles["K"][0], models / "keep")
    shutil.copytree(bundles["A"][0], models / f".old-{done.pid}-{host}-{now}-{tag}-m")  # cut short
    server = Server(models, tmp_path / "serve.log")
    try:
        assert debris(models) == sorted(name for name, stays in folders.items() if stays)
        assert server.get("/status").json()["models"] == ["keep", "m"]
        np.testing.assert_allclose(server.predict("m"), bundles["A"][1](X), atol=1e-5)
    finally:
        server.stop()


# --- SIGKILL in the middle of an upload ----------------------------------------------------------

# what the model dir holds at each paused step (the first dash-separated part of each name)
STATES = {
    "staged": [".lock", ".upload", "keep", "m", "ref_b"],
    "swap": [".lock", ".old", ".upload", "keep", "ref_b"],
    "swapped": [".lock", ".old", ".upload", "keep", "m", "ref_b"],
}


@pytest.mark.parametrize("step", list(STATES))
def test_killed_mid_upload_serves_old_or_new_whole_after_restart(tmp_path, bundles, step):
    models = tmp_path / "models"
    models.mkdir()
    populate(models, bundles)
    flag = tmp_path / "paused"
    server = Server(models, tmp_path / "serve.log", pause=f"{step}={flag}")
    try:
        y = reference(server, bundles)
        pid, state = kill_at(server, flag, bundles)
        assert pid == server.process.pid
        assert state == STATES[step]
        server.process.wait(30)
    finally:
        server.stop()
    server = Server(models, tmp_path / "serve.log")
    try:
        assert [m["name"] for m in server.get("/models").json()] == ["keep", "m", "ref_b"]
        np.testing.assert_array_equal(server.predict("m"), y["B" if step == "swapped" else "A"])
        np.testing.assert_array_equal(server.predict("keep"), y["K"])
        assert debris(models) == []
        assert server.get("/status").json()["skipped"] == {}
        again = "A" if step == "swapped" else "B"
        assert server.upload(bundles[again][0], "m").status_code == 200
        np.testing.assert_array_equal(server.predict("m"), y[again])
    finally:
        server.stop()


@pytest.mark.parametrize("step", list(STATES))
def test_a_killed_worker_leaves_the_other_serving_every_model(tmp_path, bundles, step):
    models = tmp_path / "models"
    models.mkdir()
    populate(models, bundles)
    flag = tmp_path / "paused"
    server = Server(models, tmp_path / "serve.log", "--workers", "2", pause=f"{step}={flag}")
    try:
        server.wait_started(2)
        y = reference(server, bundles)
        pid, state = kill_at(server, flag, bundles)
        assert pid != server.process.pid  # a worker, not uvicorn's supervisor
        assert state == STATES[step]
        # the new version is served only if the kill came after the swap
        versions = [y["A"], y["B"]] if step == "swapped" else [y["A"]]
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:  # the survivor answers, then a new worker too
            got = server.predict("m")
            assert any(np.array_equal(got, v) for v in versions), got
            np.testing.assert_array_equal(server.predict("keep"), y["K"])
        server.wait_started(3)  # uvicorn's supervisor started a new worker
        assert f"Child process [{pid}] died" in server.text()
        wait_for(lambda: not debris(models), "the dead worker's folders to be tidied", 10)
        time.sleep(2)  # both workers have scanned the tidied dir
        for _ in range(8):
            expected = y["B"] if step == "swapped" else y["A"]
            np.testing.assert_array_equal(server.predict("m"), expected)
        again = "A" if step == "swapped" else "B"
        assert server.upload(bundles[again][0], "m").status_code == 200
        time.sleep(2.5)  # the other worker picks the upload up
        for _ in range(8):
            np.testing.assert_array_equal(server.predict("m"), y[again])
            np.testing.assert_array_equal(server.predict("keep"), y["K"])
    finally:
        server.stop()
