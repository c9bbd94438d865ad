"""The TFaaS server and client, end to end over HTTP on 127.0.0.1."""

from __future__ import annotations

import io
import json
import re
import tarfile
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keras
import numpy as np
import pytest
import requests
from support import free_port

import mlaas4hep_nb as mn
from mlaas4hep_nb.bundle import write_bundle
from mlaas4hep_nb.tfaas.pack import pack_bundle
from mlaas4hep_nb.tfaas.server import proto

N = 6  # inputs of the small test networks
GZIP_TAR = {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}


def make_model(n_inputs: int = N, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((n_inputs,), name="inputs")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))


def local(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model(x.astype(np.float32)))


def rows(n: int, seed: int = 1, width: int = N) -> np.ndarray:
    return np.random.default_rng(seed).random((n, width), dtype=np.float32)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict:
    """Two bundles of one input width with different weights, as folders and models."""
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for name, seed in (("alpha", 0), ("beta", 7)):
        model = make_model(seed=seed)
        features = [f"f{i}" for i in range(N)]
        out[name] = (write_bundle(model, root / name, features=features), model)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    handle = mn.tfaas.serve_in_background(tmp_path_factory.mktemp("served"))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def client(server) -> mn.TFaaSClient:
    return mn.TFaaSClient(server.url)


@pytest.fixture(scope="module")
def alpha(client, bundles) -> keras.Model:
    client.upload(bundles["alpha"][0], name="alpha")
    return bundles["alpha"][1]


def gz_tar(folder: Path, arcname: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return buffer.getvalue()


def debris(model_dir: Path) -> list[str]:
    """The store's working folders left in ``model_dir`` (its ``.lock`` file stays)."""
    return sorted(p.name for p in model_dir.iterdir() if p.name.startswith(".") and p.is_dir())


def assert_serves(server, name: str, model: keras.Model) -> None:
    x = rows(3, seed=99)
    answer = requests.post(server.url + "/json", json={"values": x.tolist(), "model": name})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json(), local(model, x), atol=1e-5)


# --- upload and predict -------------------------------------------------------------------


def test_client_upload_and_predict_match_the_local_model(client, alpha, server):
    x = rows(500)
    y = client.predict("alpha", x)
    assert y.shape == (500, 1)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, local(alpha, x), atol=1e-5)
    one = client.predict("alpha", x[0])
    np.testing.assert_allclose(one, local(alpha, x[:1])[0], atol=1e-5)
    assert "alpha" in client.models()
    assert client.params("alpha")["features"] == [f"f{i}" for i in range(N)]
    status = client.status()
    assert status["server"] == "mlaas4hep_nb"
    assert not client.is_upstream()
    assert status["batches"]["alpha"]["rows"] >= 501


def test_row_by_row_upstream_mode_gives_the_same(client, alpha):
    x = rows(4, seed=5)
    np.testing.assert_allclose(
        client.predict("alpha", x, upstream=True), local(alpha, x), atol=1e-5
    )


def test_upload_keras_model_on_the_fly_and_a_tarball_file(client, tmp_path):
    model = make_model(seed=3)
    assert client.upload(model, name="fly") == "fly"
    x = rows(7)
    np.testing.assert_allclose(client.predict("fly", x), local(model, x), atol=1e-5)
    _, data = pack_bundle(write_bundle(model, tmp_path / "b"), "from-tarball")
    tarball = tmp_path / "bundle.tar.gz"
    tarball.write_bytes(data)
    assert client.upload(tarball) == "from-tarball"
    assert client.upload(tarball, name="renamed") == "renamed"
    np.testing.assert_allclose(client.predict("renamed", x), local(model, x), atol=1e-5)


def test_upload_a_trainer_duck_typed(client, bundles):
    class FakeTrainer:  # anything with export(bundle_dir) -> bundle path
        def export(self, bundle_dir):
            return write_bundle(bundles["beta"][1], bundle_dir)

    assert client.upload(FakeTrainer(), name="duck") == "duck"
    x = rows(3)
    np.testing.assert_allclose(client.predict("duck", x), local(bundles["beta"][1], x), atol=1e-5)


def test_upstream_raw_tarball_upload(server, bundles):
    data = gz_tar(bundles["beta"][0], "rawtar")
    answer = requests.post(server.url + "/upload", data=data, headers=GZIP_TAR)
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "rawtar"
    assert_serves(server, "rawtar", bundles["beta"][1])


@pytest.mark.parametrize("archive", ["tar.gz", "zip", "wrapped-zip"])
def test_upstream_form_upload(server, bundles, archive):
    folder, model = bundles["beta"]
    name = f"form-{archive}"
    if archive == "tar.gz":
        data = gz_tar(folder, ".")
    else:
        buffer = io.BytesIO()
        prefix = "saved/" if archive == "wrapped-zip" else ""
        with zipfile.ZipFile(buffer, "w") as zipped:
            for path in folder.rglob("*"):
                if path.is_file():
                    zipped.write(path, prefix + path.relative_to(folder).as_posix())
        data = buffer.getvalue()
    params = {**json.loads((folder / "params.json").read_text()), "name": name}
    files = {
        "model": ("model." + archive, data),
        "params": ("params.json", json.dumps(params)),
        "labels": ("labels.txt", b"background\nsignal\n"),
        "op": ("op", b"serving_default"),
    }
    answer = requests.post(server.url + "/upload", data={"name": name}, files=files)
    assert answer.status_code == 200, answer.text
    assert_serves(server, name, model)


# --- the upstream and extension routes ------------------------------------------------------


def test_upstream_json_routes(server, alpha):
    x = rows(2, seed=11)
    for path in ("/json", "/predict/json"):
        one = requests.post(
            server.url + path,
            json={"keys": [f"f{i}" for i in range(N)], "values": x[0].tolist(), "model": "alpha"},
        )
        assert one.status_code == 200
        assert len(one.json()) == 1
        np.testing.assert_allclose(one.json(), local(alpha, x[:1])[0], atol=1e-5)
    batch = requests.post(server.url + "/json", json={"values": x.tolist(), "model": "alpha"})
    np.testing.assert_allclose(batch.json(), local(alpha, x), atol=1e-5)


def test_proto_route(server, alpha):
    x = rows(1, seed=12)[0]
    message = proto.Row(key=[f"f{i}" for i in range(N)], value=x.tolist(), model="alpha")
    for path in ("/proto", "/predict/proto"):
        answer = requests.post(server.url + path, data=message.SerializeToString())
        assert answer.status_code == 200
        predictions = proto.Predictions()
        predictions.ParseFromString(answer.content)
        assert len(predictions.prediction) == 1
        expected = local(alpha, x[None])[0, 0]
        assert abs(predictions.prediction[0].probability - expected) < 1e-5
    bad = requests.post(server.url + "/proto", data=b"\xff\xff\xff")
    assert bad.status_code == 400


def test_tf_serving_routes(server, alpha):
    x = rows(3, seed=13)
    url = server.url + "/v1/models/alpha"
    assert requests.get(url).json()["model_version_status"][0]["state"] == "AVAILABLE"
    answer = requests.post(url + ":predict", json={"instances": x.tolist()})
    np.testing.assert_allclose(answer.json()["predictions"], local(alpha, x), atol=1e-5)
    answer = requests.post(url + ":predict", json={"inputs": {"inputs": x.tolist()}})
    np.testing.assert_allclose(answer.json()["outputs"], local(alpha, x), atol=1e-5)
    objects = [{"inputs": row} for row in x.tolist()]
    answer = requests.post(
        url + ":predict", json={"signature_name": "serving_default", "instances": objects}
    )
    np.testing.assert_allclose(answer.json()["predictions"], local(alpha, x), atol=1e-5)
    assert requests.post(url + ":classify", json={"instances": x.tolist()}).status_code == 404
    assert requests.get(server.url + "/v1/models/nope").status_code == 404
    assert requests.post(url + ":predict", json={"nothing": 1}).status_code == 400


def test_open_inference_v2_routes(server, alpha):
    x = rows(2, seed=14)
    base = server.url + "/v2"
    assert requests.get(base + "/health/live").json() == {"live": True}
    assert requests.get(base + "/health/ready").json() == {"ready": True}
    assert requests.get(base).json()["name"] == "mlaas4hep_nb"
    meta = requests.get(base + "/models/alpha").json()
    assert meta["inputs"][0] == {"name": "inputs", "datatype": "FP32", "shape": [-1, N]}
    assert requests.get(base + "/models/alpha/ready").json()["ready"] is True
    tensor = {"name": "inputs", "shape": [2, N], "datatype": "FP32", "data": x.ravel().tolist()}
    answer = requests.post(base + "/models/alpha/infer", json={"id": "q1", "inputs": [tensor]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == "q1"
    assert body["model_name"] == "alpha"
    assert body["outputs"][0]["shape"] == [2, 1]
    np.testing.assert_allclose(body["outputs"][0]["data"], local(alpha, x).ravel(), atol=1e-5)
    nested = {**tensor, "data": x.tolist()}
    answer = requests.post(base + "/models/alpha/infer", json={"inputs": [nested]})
    np.testing.assert_allclose(
        answer.json()["outputs"][0]["data"], local(alpha, x).ravel(), atol=1e-5
    )
    wrong = {**tensor, "shape": [3, N]}
    assert requests.post(base + "/models/alpha/infer", json={"inputs": [wrong]}).status_code == 400
    assert requests.post(base + "/models/nope/infer", json={"inputs": [tensor]}).status_code == 404


def test_models_params_status_and_openapi(server, alpha, client):
    listed = requests.get(server.url + "/models").json()
    assert any(m["name"] == "alpha" and m["inputNode"] for m in listed)
    assert requests.get(server.url + "/params/alpha").json()["name"] == "alpha"
    assert requests.get(server.url + "/params/nope").status_code == 404
    assert requests.post(server.url + "/params", json={"name": "alpha"}).status_code == 200
    assert requests.get(server.url + "/params").json()["name"] == "alpha"
    x = rows(1, seed=15)[0]
    no_model = requests.post(server.url + "/json", json={"values": x.tolist()})
    np.testing.assert_allclose(no_model.json(), local(alpha, x[None])[0], atol=1e-5)
    schema = requests.get(server.url + "/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert "/v2/models/{name}/infer" in schema["paths"]
    assert "/json" in requests.get(server.url + "/").json()["routes"]


def test_delete_from_memory_and_disk(server, client, bundles):
    for how in ("client", "path", "form"):
        name = f"gone-{how}"
        client.upload(bundles["alpha"][0], name=name)
        assert (server.model_dir / name / "saved_model.pb").is_file()
        if how == "client":
            client.delete(name)
        elif how == "path":
            assert requests.delete(f"{server.url}/delete/{name}").status_code == 200
        else:
            assert requests.delete(server.url + "/delete", data={"model": name}).status_code == 200
        assert name not in client.models()
        assert not (server.model_dir / name).exists()
        with pytest.raises(mn.tfaas.TFaaSError) as info:
            client.predict(name, rows(1))
        assert info.value.status == 404
    assert requests.delete(server.url + "/delete/never-was").status_code == 404
    assert requests.delete(server.url + "/delete").status_code == 400
    assert not debris(server.model_dir)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "why"),
    [
        (b"{not json", 400, "malformed JSON"),
        (json.dumps({"values": [1, 2], "model": "alpha"}).encode(), 400, f"takes {N} values"),
        (json.dumps({"values": ["a"] * N, "model": "alpha"}).encode(), 400, "numbers only"),
        (json.dumps({"values": [[1] * N, [1]], "model": "alpha"}).encode(), 400, "every row"),
        (json.dumps({"values": [1] * N, "model": "nope"}).encode(), 404, "unknown model"),
        (json.dumps({"values": [1] * N, "model": "../etc"}).encode(), 404, "unknown model"),
        (
            json.dumps({"raw": True, "events": [{"x": 1}], "model": "alpha"}).encode(),
            400,
            "FeatureSpec",
        ),
        (b"", 400, "malformed JSON"),
    ],
)
def test_bad_predictions_are_4xx_and_the_server_goes_on(server, alpha, body, status, why):
    answer = requests.post(server.url + "/json", data=body)
    assert answer.status_code == status
    assert why in answer.json()["error"]
    assert_serves(server, "alpha", alpha)


def tarball_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_bad_uploads_are_400_and_write_nothing_outside(server, alpha, tmp_path):
    tag = uuid.uuid4().hex
    outside = [server.model_dir.parent / f"escape-{tag}", Path(f"/tmp/abs-{tag}")]
    cases = {
        "climbs out": tarball_of({"evil/params.json": b"{}", f"../escape-{tag}": b"x"}),
        "absolute": tarball_of({"evil/params.json": b"{}", f"/tmp/abs-{tag}": b"x"}),
        "not an archive": b"just some bytes",
        "no SavedModel": tarball_of(
            {"broken/params.json": b"{}", "broken/saved_model.pb": b"junk"}
        ),
        "no params": tarball_of({"bare/saved_model.pb": b"junk"}),
        "two folders": tarball_of({"a/params.json": b"{}", "b/params.json": b"{}"}),
        "bad name": tarball_of({"bad name/params.json": b"{}"}),
        "hidden name": tarball_of({".hidden/params.json": b"{}"}),
    }
    for why, data in cases.items():
        answer = requests.post(server.url + "/upload", data=data, headers=GZIP_TAR)
        assert answer.status_code == 400, why
        assert answer.json()["error"], why
    for path in outside:
        assert not path.exists()
    assert "broken" not in requests.get(server.url + "/models").text
    assert not debris(server.model_dir)
    form = requests.post(server.url + "/upload", data={"name": "x"}, files={"model": ("m", b"x")})
    assert form.status_code == 400
    assert "lacks" in form.json()["error"]
    assert_serves(server, "alpha", alpha)


def test_wrong_method_and_unknown_route_are_json_errors(server):
    assert requests.get(server.url + "/json").status_code == 405
    missing = requests.get(server.url + "/data", params={"model": "/etc/passwd"})
    assert missing.status_code == 404
    assert "error" in missing.json()


def test_upload_size_limit_is_413(tmp_path, bundles):
    with mn.tfaas.serve_in_background(tmp_path / "m", max_upload=4000) as small:
        _, data = pack_bundle(bundles["alpha"][0], "big")
        assert len(data) > 4000
        answer = requests.post(small.url + "/upload", data=data, headers=GZIP_TAR)
        assert answer.status_code == 413
        assert "limit" in answer.json()["error"]
        chunks = iter([data[:3000], data[3000:]])  # no Content-Length: counted as it comes
        answer = requests.post(small.url + "/upload", data=chunks, headers=GZIP_TAR)
        assert answer.status_code == 413
        body = json.dumps({"values": [[0.5] * N] * 2000, "model": "alpha"}).encode()
        assert requests.post(small.url + "/json", data=body).status_code == 413
        assert requests.get(small.url + "/models").json() == []


# --- security ---------------------------------------------------------------------------------


def test_token_protects_uploads_and_deletes(tmp_path, bundles):
    folder, model = bundles["alpha"]
    with mn.tfaas.serve_in_background(tmp_path / "m", token="s3cret") as guarded:
        anonymous = mn.TFaaSClient(guarded.url)
        with pytest.raises(mn.tfaas.TFaaSError) as info:
            anonymous.upload(folder, name="t")
        assert info.value.status == 401
        wrong = requests.post(guarded.url + "/upload", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        owner = mn.TFaaSClient(guarded.url, token="s3cret")
        owner.upload(folder, name="t")
        x = rows(2)
        np.testing.assert_allclose(anonymous.predict("t", x), local(model, x), atol=1e-5)
        assert requests.delete(guarded.url + "/delete/t").status_code == 401
        assert requests.post(guarded.url + "/params", json={"name": "t"}).status_code == 401
        owner.delete("t")
    with mn.tfaas.serve_in_background(tmp_path / "m2", token="s3cret", token_all=True) as closed:
        mn.TFaaSClient(closed.url, token="s3cret").upload(folder, name="t")
        assert (
            requests.post(closed.url + "/json", json={"values": x[0].tolist()}).status_code == 401
        )
        assert requests.get(closed.url + "/models").status_code == 401
        assert requests.get(closed.url + "/v2/health/live").status_code == 200
        np.testing.assert_allclose(
            mn.TFaaSClient(closed.url, token="s3cret").predict("t", x), local(model, x), atol=1e-5
        )


# --- concurrency ------------------------------------------------------------------------------


def test_concurrent_uploads_of_different_models(server, client):
    models = {f"conc{i}": make_model(seed=20 + i) for i in range(4)}
    errors = []

    def push(name, model):
        try:
            mn.TFaaSClient(server.url).upload(model, name=name)
        except Exception as err:  # reported below, with the name
            errors.append((name, err))

    threads = [threading.Thread(target=push, args=item) for item in models.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    x = rows(5)
    for name, model in models.items():
        np.testing.assert_allclose(client.predict(name, x), local(model, x), atol=1e-5)


def test_reupload_during_a_stream_of_predictions_is_atomic(server, bundles):
    (folder_a, model_a), (folder_b, model_b) = bundles["alpha"], bundles["beta"]
    client = mn.TFaaSClient(server.url)
    client.upload(folder_a, name="swap")
    x = rows(64, seed=3)
    ya, yb = local(model_a, x), local(model_b, x)
    stop = threading.Event()
    seen, problems = [], []

    def predict(single: bool):
        own = mn.TFaaSClient(server.url)
        while not stop.is_set():
            try:
                y = own.predict("swap", x[:1] if single else x)
            except Exception as err:
                problems.append(repr(err))
                continue
            if np.allclose(y, ya[: len(y)], atol=1e-5):
                seen.append("a")
            elif np.allclose(y, yb[: len(y)], atol=1e-5):
                seen.append("b")
            else:
                problems.append("a mixed or wrong answer")

    threads = [threading.Thread(target=predict, args=(i % 2 == 0,)) for i in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while "a" not in seen and not problems and time.monotonic() < deadline:
        time.sleep(0.01)  # the stream is flowing before the first swap
    for i in range(6):
        client.upload(folder_b if i % 2 == 0 else folder_a, name="swap")
    client.upload(folder_b, name="swap")
    stop.set()
    for thread in threads:
        thread.join(60)
    assert problems == []
    assert "a" in seen
    assert "b" in seen
    np.testing.assert_allclose(client.predict("swap", x), yb, atol=1e-5)  # never stale


# --- raw events with the FeatureSpec -----------------------------------------------------------


@pytest.mark.slow
def test_trainer_upload_and_raw_events_match_training(client, tth):
    import uproot

    from mlaas4hep_nb.data.convert import Converter

    stream = mn.DataStream(tth, chunk_size=2000, batch_size=128, progress=False)
    trainer = mn.Trainer(stream, epochs=1)
    trainer.fit(live_plot=False, progress=False)
    assert client.upload(trainer, name="tth") == "tth"
    branches = [b.name for b in stream.spec.branches]
    with uproot.open(tth[1][0]) as file:
        events = file["Events"].arrays(branches, entry_stop=40).to_list()
    served = client.predict_raw("tth", events)
    columns = {branch: ak_column(events, branch) for branch in branches}
    x, mask, _ = Converter(stream.spec, stream.normalize)(columns)
    expected = trainer.predict(x, mask).reshape(40, -1)
    assert served.shape == expected.shape
    np.testing.assert_allclose(served, expected, atol=1e-5)
    bad = [{**events[0]}]
    del bad[0][branches[0]]
    with pytest.raises(mn.tfaas.TFaaSError, match="has no branch"):
        client.predict_raw("tth", bad)
    stream.close()


def ak_column(events, branch):
    import awkward as ak

    return ak.Array([event[branch] for event in events])


def test_one_write_protocol_keeps_head_requests_large_bodies_and_keep_alive(server, alpha):
    with requests.Session() as session:  # one connection, many responses
        head = session.head(server.url + "/models", timeout=5)
        assert head.status_code == 200
        assert head.content == b""
        x = rows(20_000, seed=21)  # a response of several hundred kB
        big = session.post(server.url + "/json", json={"values": x.tolist(), "model": "alpha"})
        np.testing.assert_allclose(big.json(), local(alpha, x), atol=1e-5)
        for _ in range(20):
            assert session.get(server.url + "/v2/health/live", timeout=5).json() == {"live": True}
        huge = rows(60_000, seed=22)  # ~7 MB: reading pauses at 4 MB and resumes
        body = json.dumps({"values": huge.tolist(), "model": "alpha"}).encode()
        assert len(body) > 5 * 1024 * 1024
        answer = session.post(server.url + "/json", data=body)
        np.testing.assert_allclose(answer.json(), local(alpha, huge), atol=1e-5)


# --- the client against an upstream-like server, and its options ------------------------------


class FakeUpstream(BaseHTTPRequestHandler):
    """Answers like upstream TFaaS: one row per /json request, no "server" in /status.

    As upstream's DeleteHandler, it reads the model to delete from a multipart
    form (or the path /delete/NAME), never from a query string; as its rate
    limiter (ulule/limiter), it refuses every ``limit_every``-th request with
    429 "Limit exceeded" and the X-RateLimit headers.
    """

    limit_every = 0
    seen: list  # (method, path, status) of each request
    deleted: list

    def _answer(self, body: object, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.seen.append((self.command, self.path, status))

    def _limited(self) -> bool:
        if not self.limit_every or (len(self.seen) + 1) % self.limit_every:
            return False
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        data = b"Limit exceeded\n"
        self.send_response(429)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-RateLimit-Limit", "1")
        self.send_header("X-RateLimit-Remaining", "0")
        self.send_header("X-RateLimit-Reset", str(int(time.time())))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.seen.append((self.command, self.path, 429))
        return True

    def do_GET(self):
        if not self._limited():
            self._answer({"Uptime": 1.0, "getRequests": 1} if self.path == "/status" else None)

    def do_POST(self):
        if self._limited():
            return
        row = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert all(isinstance(v, float) for v in row["values"])  # one row, never a batch
        self._answer([sum(row["values"])])

    def do_DELETE(self):
        if self._limited():
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        model = ""
        if "form-data" in self.headers.get("Content-Type", ""):  # r.FormValue("model")
            found = re.search(r'name="model"\r\n\r\n(.*?)\r\n--', body)
            model = found.group(1) if found else ""
        elif self.path.startswith("/delete/"):
            model = self.path.removeprefix("/delete/")
        if not model:
            self._answer({"error": "no model name is provided"}, 400)
            return
        self.deleted.append(model)
        self._answer(None)

    def log_message(self, *args):
        pass


def start_upstream(limit_every: int = 0):
    handler = type("Upstream", (FakeUpstream,), {"limit_every": limit_every})
    handler.seen, handler.deleted = [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, handler


@pytest.fixture
def upstream():
    httpd, _ = start_upstream()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_client_deletes_with_upstreams_form_and_waits_out_its_rate_limit():
    httpd, handler = start_upstream(limit_every=2)
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert requests.delete(url + "/delete", params={"model": "m"}).status_code == 400
        client = mn.TFaaSClient(url, backoff=0.01)
        assert client.is_upstream()
        x = rows(4)
        np.testing.assert_allclose(client.predict("m", x), x.sum(axis=1, keepdims=True), 1e-5)
        client.delete("m")
        assert handler.deleted == ["m"]
        refused = [entry for entry in handler.seen if entry[2] == 429]
        assert len(refused) >= 3
        impatient = mn.TFaaSClient(url, retries=0, upstream=True)
        with pytest.raises(mn.tfaas.TFaaSError, match="Limit exceeded") as info:
            impatient.predict("m", x)  # four requests: one is refused
        assert info.value.status == 429
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_rate_limit_wait_follows_the_servers_headers():
    from mlaas4hep_nb.tfaas.client import _rate_limit_wait

    def answer(**headers):
        response = requests.Response()
        response.headers.update({key.replace("_", "-"): value for key, value in headers.items()})
        return response

    assert _rate_limit_wait(answer(), 0.2, 30) == 0.2
    assert _rate_limit_wait(answer(Retry_After="3"), 0.2, 30) == 3
    assert _rate_limit_wait(answer(Retry_After="600"), 0.2, 30) == 30
    reset = str(int(time.time()) + 5)
    assert 3.5 < _rate_limit_wait(answer(X_RateLimit_Reset=reset), 0.2, 30) <= 5
    assert _rate_limit_wait(answer(X_RateLimit_Reset="soon"), 0.2, 30) == 0.2


def test_client_detects_upstream_and_sends_row_by_row(upstream):
    client = mn.TFaaSClient(upstream)
    assert client.is_upstream()
    x = rows(3)
    np.testing.assert_allclose(client.predict("m", x), x.sum(axis=1, keepdims=True), rtol=1e-5)
    assert client.models() == []
    with pytest.raises(mn.tfaas.TFaaSError) as info:
        client.params("m")
    assert info.value.status == 404


def test_client_certificates_and_retries(tmp_path, monkeypatch):
    proxy = tmp_path / "x509up"
    proxy.write_text("PEM")
    monkeypatch.setenv("X509_USER_PROXY", str(proxy))
    monkeypatch.setenv("X509_CERT_DIR", str(tmp_path))
    client = mn.TFaaSClient("https://tfaas.example:8083/")
    assert client.url == "https://tfaas.example:8083"
    assert client.session.cert == str(proxy)
    assert client.session.verify == str(tmp_path)
    pair = mn.TFaaSClient("https://h", cert="c.pem", key="k.pem", verify=False)
    assert pair.session.cert == ("c.pem", "k.pem")
    assert pair.session.verify is False
    port = free_port()  # nothing listens there
    down = mn.TFaaSClient(f"http://127.0.0.1:{port}", retries=2, backoff=0.01, timeout=2)
    with pytest.raises(mn.tfaas.TFaaSError, match="cannot reach") as info:
        down.status()
    assert info.value.status == 0
    with pytest.raises(TypeError, match="cannot upload"):
        down.upload(object(), name="x")
