"""Upstream TFaaS's documented requests, replayed as written against this package's server.

The curl lines are those of upstream's doc/curl_client.md and doc/MNIST.md
(paths and host made local); they run through a real curl when one is
installed, else as the same request by requests. The Python client's
requests are rebuilt byte for byte as src/python/tfaas_client.py builds them
(its MultiPartForm, which base64-encodes octet-stream parts and sets
``Content-Encoding: base64``), sent with urllib as it sends them.
"""

from __future__ import annotations

import binascii
import io
import itertools
import json
import mimetypes
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import keras
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

import mlaas4hep_nb as mn
from mlaas4hep_nb.bundle import write_bundle
from mlaas4hep_nb.tfaas.server import proto

N = 6
LABELS = ["higgs", "qcd", "muons"]


# --- upstream's clients ---------------------------------------------------------------------


CURL = shutil.which("curl")


def curl(line: str, cwd: Path) -> tuple[int, bytes]:
    """Run one of upstream's curl lines in ``cwd``; the status and the body of the answer."""
    args = shlex.split(line)
    assert args[0] == "curl"
    if CURL:
        done = subprocess.run(
            [*args, "-sS", "-w", "\n%{http_code}"],
            cwd=cwd,
            capture_output=True,
            timeout=120,
            check=True,
        )
        body, _, code = done.stdout.rpartition(b"\n")
        return int(code), body
    return _curl_by_requests(args[1:], cwd)


def _curl_by_requests(args: list[str], cwd: Path) -> tuple[int, bytes]:
    """The request curl sends for the flags upstream's docs use (-X -H -d --data-binary -F)."""
    method, url, data, headers, parts = None, None, None, {}, {}
    flags = iter(args)
    for arg in flags:
        if arg == "-X":
            method = next(flags)
        elif arg == "-H":
            key, _, value = next(flags).partition(":")
            headers[key.strip()] = value.strip()
        elif arg in ("-d", "--data-binary") or arg.startswith("-d@"):
            value = arg[2:] if arg.startswith("-d@") else next(flags)
            data = (cwd / value[1:]).read_bytes() if value.startswith("@") else value.encode()
            if arg != "--data-binary":  # -d drops line breaks from a file
                data = data.replace(b"\r", b"").replace(b"\n", b"")
        elif arg == "-F":
            key, _, value = next(flags).partition("=")
            if value.startswith("@"):
                path = cwd / value[1:]
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                parts[key] = (path.name, path.read_bytes(), kind)
            else:
                parts[key] = (None, value)
        elif arg.startswith("http"):
            url = arg
    if data is not None and not any(key.lower() == "content-type" for key in headers):
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    method = method or ("POST" if data is not None or parts else "GET")
    answer = requests.request(method, url, headers=headers, data=data, files=parts or None)
    return answer.status_code, answer.content


class MultiPartForm:
    """tfaas_client.py's MultiPartForm in Python 3: the same bytes on the wire."""

    def __init__(self) -> None:
        self.form_fields: list = []
        self.files: list = []
        # the shape of mimetools.choose_boundary(): host address, pid, a random part, a counter
        self.boundary = f"127.0.0.1.{os.getpid()}.{uuid.uuid4().int % 10**12}.1"

    def get_content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def add_field(self, name: str, value: str) -> None:
        self.form_fields.append((name, value))

    def add_file(self, fieldname: str, filename: str, body: bytes, mimetype=None) -> None:
        if mimetype is None:
            mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if mimetype == "application/octet-stream":
            body = binascii.b2a_base64(body)
        self.files.append((fieldname, filename, mimetype, body))

    def __bytes__(self) -> bytes:
        parts = []
        part_boundary = "--" + self.boundary
        parts.extend(
            [part_boundary, f'Content-Disposition: form-data; name="{name}"', "", value]
            for name, value in self.form_fields
        )
        parts.extend(
            [
                part_boundary,
                f'Content-Disposition: form-data; name="{field}"; filename="{filename}"',
                f"Content-Type: {content_type}",
                "",
                body,
            ]
            for field, filename, content_type, body in self.files
        )
        flattened = list(itertools.chain(*parts))
        flattened.append("--" + self.boundary + "--")
        flattened.append("")
        return b"\r\n".join(x if isinstance(x, bytes) else str(x).encode() for x in flattened)


class PythonClient:
    """The functions of upstream's tfaas_client.py: the same requests, sent with urllib."""

    CLIENT = "tfaas-client/1.1::python/{}.{}".format(*sys.version_info[:2])
    AGENT = f"{CLIENT} ({os.environ.get('USER', '')})"

    def __init__(self, host: str) -> None:
        self.host = host

    def _send(self, url: str, headers: dict, data=None, method: str = "POST"):
        request = urllib.request.Request(url=url, headers=headers, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def _form(self, url: str, form: MultiPartForm, headers: dict, method: str = "POST"):
        data = bytes(form)
        headers = {**headers, "Content-length": len(data), "Content-Type": form.get_content_type()}
        return self._send(url, headers, data, method)

    def upload(self, ifile: Path):
        params = json.loads(ifile.read_text())
        form = MultiPartForm()
        for key in params:
            if key in ("model", "labels", "params"):
                name = params[key]
                form.add_file(key, name, Path(name).read_bytes())
            else:
                form.add_field(key, params[key])
        headers = {"User-Agent": self.AGENT, "Content-Encoding": "base64"}
        return self._form(self.host + "/upload", form, headers)

    def bundle(self, ifile: Path):
        headers = {
            "User-Agent": self.AGENT,
            "Content-Encoding": "gzip",
            "Content-Type": "application/octet-stream",
        }
        return self._send(self.host + "/upload", headers, ifile.read_bytes())

    def predict(self, ifile: Path, model: str = ""):
        params = json.loads(ifile.read_text())
        if model:
            params["model"] = model
        headers = {"Accept": "application/json", "User-Agent": self.AGENT}
        return self._send(self.host + "/json", headers, json.dumps(params).encode())

    def predict_image(self, ifile: str, model: str):
        form = MultiPartForm()
        form.add_file("image", ifile, Path(ifile).read_bytes())
        form.add_field("model", model)
        headers = {"Accept": "application/json", "User-Agent": self.AGENT}
        return self._form(self.host + "/image", form, headers)

    def delete(self, model: str):
        form = MultiPartForm()
        form.add_field("model", model)
        return self._form(self.host + "/delete", form, {"User-Agent": self.AGENT}, "DELETE")

    def models(self):
        headers = {"Accept": "application/json", "User-Agent": self.AGENT}
        return self._send(self.host + "/models", headers, method="GET")


# --- models as upstream's users make them ------------------------------------------------------


def keras_model(seed: int = 0) -> keras.Model:
    """curl_client.md's network: a first Dense layer named "inputs", a sigmoid output."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((N,)),
            keras.layers.Dense(16, activation="relu", name="inputs"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )


class Linear(tf.Module):
    """A tf.Module with a tf.function signature, saved with tf.saved_model.save."""

    def __init__(self) -> None:
        weights = np.random.default_rng(3).normal(size=(N, 2)).astype(np.float32)
        self.w = tf.Variable(weights)

    @tf.function(input_signature=[tf.TensorSpec([None, N], tf.float32)])
    def __call__(self, x):
        return tf.nn.softmax(x @ self.w)


def frozen_graph(path: Path, shape: tuple, seed: int, scale: float = 1.0):
    """A TF1 frozen graph (dense_4_input -> output_node0, softmax of 3) and its function."""
    n = int(np.prod(shape))
    weights = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32) * scale
    w = tf.Variable(weights)

    @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32, name="dense_4_input")])
    def forward(x):
        return tf.nn.softmax(tf.reshape(x, [-1, n]) @ w, name="output_node0")

    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return lambda x: forward(tf.constant(x, tf.float32)).numpy()


def rows(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, N), dtype=np.float32)


def tar_cfz(cwd: Path, tarball: str, *folders: str) -> None:
    """``tar cfz tarball folders...`` as upstream's docs say, by Python's tarfile if no tar."""
    if shutil.which("tar"):
        subprocess.run(["tar", "cfz", tarball, *folders], cwd=cwd, check=True)
        return
    with tarfile.open(cwd / tarball, "w:gz") as tar:
        for folder in folders:
            tar.add(cwd / folder, arcname=folder)


def png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


@pytest.fixture
def server(tmp_path):
    with mn.tfaas.serve_in_background(tmp_path / "served") as handle:
        yield handle


def served(server) -> list[str]:
    return sorted(model["name"] for model in requests.get(server.url + "/models").json())


# --- 1. a tarball of a bare SavedModel (curl_client.md) ---------------------------------------


@pytest.mark.parametrize("how", ["tf.saved_model.save", "keras export", "tf.Module"])
def test_curl_tarball_of_a_bare_saved_model_is_served_as_model(server, tmp_path, how):
    if how == "tf.Module":
        model = Linear()
        tf.saved_model.save(model, str(tmp_path / "model"))
    else:
        model = keras_model()
        if how == "keras export":
            model.export(str(tmp_path / "model"), verbose=False)
        else:  # the doc's line; TF 2.21 still saves a Keras 3 model this way
            tf.saved_model.save(model, str(tmp_path / "model"))
    assert not (tmp_path / "model" / "params.json").exists()
    tar_cfz(tmp_path, "model.tar.gz", "model")
    status, body = curl(
        'curl -X POST -H "Content-Encoding: gzip" -H "content-type: application/octet-stream" '
        f"--data-binary @model.tar.gz {server.url}/upload",
        tmp_path,
    )
    assert status == 200, body
    assert json.loads(body)["n_features"] == N
    x = rows(1, seed=4)[0]
    (tmp_path / "input.json").write_text(
        json.dumps({"keys": [f"x{i}" for i in range(N)], "values": x.tolist(), "model": "model"})
    )
    status, body = curl(
        f'curl -s -X POST -H "Content-type: application/json" -d@input.json {server.url}/json',
        tmp_path,
    )
    assert status == 200, body
    expected = np.asarray(model(tf.constant(x[None])))[0]
    np.testing.assert_allclose(json.loads(body), expected, atol=1e-5)
    params = requests.get(server.url + "/params/model").json()
    assert params["name"] == "model"
    assert params["n_features"] == N
    assert params["input_node"] == params["inputNode"]
    assert "derived" in params["description"]


# --- 2. several model folders in one tarball ------------------------------------------------------


def test_tarball_of_several_models_loads_all_or_none(server, tmp_path):
    first, second = keras_model(1), keras_model(2)
    tf.saved_model.save(first, str(tmp_path / "first"))  # a bare SavedModel
    write_bundle(second, tmp_path / "second")  # a full bundle
    (tmp_path / "third").mkdir()  # a TF1 bundle: frozen graph, params.json, labels.txt
    third = frozen_graph(tmp_path / "third" / "tf_model.pb", (N,), seed=5)
    third_params = {"name": "third", "model": "tf_model.pb", "labels": "labels.txt"}
    third_params.update(input_node="dense_4_input", output_node="output_node0")
    (tmp_path / "third" / "params.json").write_text(json.dumps(third_params))
    (tmp_path / "third" / "labels.txt").write_text("\n".join(LABELS) + "\n")
    tar_cfz(tmp_path, "models.tar.gz", "first", "second", "third")
    status, body = curl(
        'curl -X POST -H "Content-Encoding: gzip" -H "content-type: application/octet-stream" '
        f"--data-binary @models.tar.gz {server.url}/upload",
        tmp_path,
    )
    assert status == 200, body
    assert sorted(m["name"] for m in json.loads(body)["models"]) == ["first", "second", "third"]
    x = rows(3, seed=6)
    for name, model in (("first", first), ("second", second), ("third", third)):
        answer = requests.post(server.url + "/json", json={"values": x.tolist(), "model": name})
        np.testing.assert_allclose(answer.json(), np.asarray(model(x)), atol=1e-5)

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "saved_model.pb").write_bytes(b"not a SavedModel")
    (tmp_path / "broken" / "params.json").write_text('{"name": "broken"}')
    tf.saved_model.save(keras_model(3), str(tmp_path / "fine"))
    tar_cfz(tmp_path, "mixed.tar.gz", "fine", "broken")
    status, body = PythonClient(server.url).bundle(tmp_path / "mixed.tar.gz")  # --bundle
    assert status == 400
    assert "'broken'" in json.loads(body)["error"]
    assert served(server) == ["first", "second", "third"]  # "fine" was not installed either
    debris = [p.name for p in server.model_dir.iterdir() if p.name.startswith(".")]
    assert debris == [".lock"]  # no staging left behind


# --- 3. and 4. upstream's Python client, and frozen graphs by curl --------------------------------


def test_python_client_upload_of_a_frozen_graph_base64_encoded(server, tmp_path):
    model = frozen_graph(tmp_path / "tf_model.pb", (N,), seed=7)
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    params = {"name": "myModel", "model": "tf_model.pb", "labels": "labels.txt"}
    params.update(inputNode="dense_4_input", outputNode="output_node0")
    (tmp_path / "params.json").write_text(json.dumps(params))
    upload = {
        "model": str(tmp_path / "tf_model.pb"),
        "labels": str(tmp_path / "labels.txt"),
        "name": "myModel",
        "params": str(tmp_path / "params.json"),
    }
    (tmp_path / "upload.json").write_text(json.dumps(upload))
    client = PythonClient(server.url)
    status, body = client.upload(tmp_path / "upload.json")
    assert status == 200, body
    stored = server.model_dir / "myModel" / "tf_model.pb"
    assert stored.read_bytes() == (tmp_path / "tf_model.pb").read_bytes()  # decoded
    status, body = client.models()
    assert [m["name"] for m in json.loads(body)] == ["myModel"]

    x = rows(1, seed=8)[0]
    # python_client.md's input.json says "name", not "model": upstream then uses the
    # last uploaded model, and so does this server
    (tmp_path / "input.json").write_text(
        json.dumps({"keys": [f"attr{i}" for i in range(N)], "values": x.tolist(), "name": "x"})
    )
    status, body = client.predict(tmp_path / "input.json")
    assert status == 200, body
    np.testing.assert_allclose(json.loads(body), model(x[None])[0], atol=1e-5)
    status, body = client.predict(tmp_path / "input.json", model="myModel")
    np.testing.assert_allclose(json.loads(body), model(x[None])[0], atol=1e-5)

    status, body = client.delete("myModel")
    assert status == 200, body
    assert served(server) == []


def test_python_client_upload_keeps_archives_and_refuses_bad_base64(server, tmp_path):
    # the client base64-encodes only octet-stream parts, yet always sends the header:
    # a .tar.gz model goes as it is (upstream cannot decode it; this server keeps it)
    model = keras_model(4)
    bundle = write_bundle(model, tmp_path / "bundle")
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(bundle, arcname=".")
    params = json.loads((bundle / "params.json").read_text())
    (tmp_path / "params.json").write_text(json.dumps({**params, "name": "archived"}))
    upload = {
        "name": "archived",
        "model": str(tmp_path / "model.tar.gz"),
        "params": str(tmp_path / "params.json"),
        "labels": str(bundle / "labels.txt"),
    }
    (tmp_path / "upload.json").write_text(json.dumps(upload))
    status, body = PythonClient(server.url).upload(tmp_path / "upload.json")
    assert status == 200, body
    x = rows(2)
    answer = requests.post(server.url + "/json", json={"values": x.tolist(), "model": "archived"})
    np.testing.assert_allclose(answer.json(), np.asarray(model(x)), atol=1e-5)

    files = {
        "model": ("m.pb", b"%%% not base64 %%%"),
        "params": ("params.json", b'{"name": "bad"}'),
        "labels": ("labels.txt", b"a\n"),
    }
    answer = requests.post(
        server.url + "/upload",
        data={"name": "bad"},
        files=files,
        headers={"Content-Encoding": "base64"},
    )
    assert answer.status_code == 400
    assert "base64" in answer.json()["error"]


@pytest.mark.parametrize("via", ["curl", "requests"])
def test_curl_form_upload_of_a_frozen_graph_predicts_by_json_and_proto(
    server, tmp_path, monkeypatch, via
):
    if via == "curl" and not CURL:
        pytest.skip("curl is not installed; the same requests are sent by requests")
    monkeypatch.setattr(sys.modules[__name__], "CURL", CURL if via == "curl" else None)
    model = frozen_graph(tmp_path / "tf_model.pb", (N,), seed=9)
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (tmp_path / "params.json").write_text(
        json.dumps(
            {
                "name": "DenseModel",
                "model": "tf_model.pb",
                "labels": "labels.txt",
                "inputNode": "dense_4_input",
                "outputNode": "output_node0",
            }
        )
    )
    status, body = curl(
        f"curl -X POST {server.url}/upload -F 'name=DenseModel' -F 'params=@params.json' "
        "-F 'model=@tf_model.pb' -F 'labels=@labels.txt'",
        tmp_path,
    )
    assert status == 200, body
    status, body = curl(f"curl {server.url}/models", tmp_path)
    (listed,) = json.loads(body)
    expected = {"name": "DenseModel", "model": "tf_model.pb", "labels": "labels.txt"}
    assert listed.items() >= {**expected, "inputNode": "dense_4_input"}.items()
    x = rows(4, seed=10)
    y = model(x)
    one = requests.post(server.url + "/json", json={"values": x[0].tolist(), "model": "DenseModel"})
    np.testing.assert_allclose(one.json(), y[0], atol=1e-5)
    batch = requests.post(server.url + "/json", json={"values": x.tolist(), "model": "DenseModel"})
    np.testing.assert_allclose(batch.json(), y, atol=1e-5)
    message = proto.Row(key=[f"f{i}" for i in range(N)], value=x[1].tolist(), model="DenseModel")
    answer = requests.post(server.url + "/proto", data=message.SerializeToString())
    predictions = proto.Predictions()
    predictions.ParseFromString(answer.content)
    assert [c.label for c in predictions.prediction] == LABELS
    np.testing.assert_allclose([c.probability for c in predictions.prediction], y[1], atol=1e-5)

    wrong = requests.post(server.url + "/json", json={"values": [1.0] * 4, "model": "DenseModel"})
    assert wrong.status_code == 400
    with mn.tfaas.serve_in_background(server.model_dir) as again:  # served after a restart
        answer = requests.post(again.url + "/json", json={"values": x.tolist()})
        np.testing.assert_allclose(answer.json(), y, atol=1e-5)

    # a graph that was never frozen still reads its variables: refused at upload
    params = json.loads((tmp_path / "params.json").read_text())
    (tmp_path / "params.json").write_text(json.dumps({**params, "name": "Unfrozen"}))
    graph = tf.Graph()
    with graph.as_default():
        x_in = tf.compat.v1.placeholder(tf.float32, [None, N], name="dense_4_input")
        weights = tf.compat.v1.Variable(np.ones((N, 1), np.float32), name="w")
        tf.identity(tf.matmul(x_in, weights), name="output_node0")
    (tmp_path / "tf_model.pb").write_bytes(graph.as_graph_def().SerializeToString())
    status, body = curl(
        f"curl -X POST {server.url}/upload -F 'name=Unfrozen' -F 'params=@params.json' "
        "-F 'model=@tf_model.pb' -F 'labels=@labels.txt'",
        tmp_path,
    )
    assert status == 400, body
    assert "'Unfrozen' has no loadable frozen graph" in json.loads(body)["error"], body
    no_nodes = json.dumps({"name": "NoNodes", "model": "tf_model.pb"})
    (tmp_path / "params.json").write_text(no_nodes)
    status, body = curl(
        f"curl -X POST {server.url}/upload -F 'name=NoNodes' -F 'params=@params.json' "
        "-F 'model=@tf_model.pb' -F 'labels=@labels.txt'",
        tmp_path,
    )
    assert status == 400
    assert "inputNode" in json.loads(body)["error"]


# --- 5. images ---------------------------------------------------------------------------------


def test_curl_image_classification_with_a_frozen_graph(server, tmp_path):
    model = frozen_graph(tmp_path / "tf_model.pb", (8, 8, 1), seed=11, scale=0.01)
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    params = {"name": "ImageModel", "model": "tf_model.pb", "labels": "labels.txt"}
    params.update(inputNode="dense_4_input", outputNode="output_node0", img_channels=1)
    (tmp_path / "params.json").write_text(json.dumps(params))
    status, body = curl(
        f"curl -X POST {server.url}/upload -F 'name=ImageModel' -F 'params=@params.json' "
        "-F 'model=@tf_model.pb' -F 'labels=@labels.txt'",
        tmp_path,
    )
    assert status == 200, body
    pixels = np.random.default_rng(12).integers(0, 256, (8, 8))
    png(tmp_path / "file.png", pixels)
    status, body = curl(
        f"curl {server.url}/image -F 'image=@file.png' -F 'model=ImageModel'", tmp_path
    )
    assert status == 200, body
    answer = json.loads(body)
    y = model(pixels.reshape(1, 8, 8, 1).astype(np.float32))[0]  # pixels 0-255, as upstream
    order = np.argsort(-y)
    assert answer["filename"] == "file.png"
    assert [item["label"] for item in answer["labels"]] == [LABELS[i] for i in order]
    np.testing.assert_allclose([item["probability"] for item in answer["labels"]], y[order], 1e-5)

    # upstream's Python client: the file part carries the path it was given
    status, body = PythonClient(server.url).predict_image(str(tmp_path / "file.png"), "ImageModel")
    assert status == 200, body
    assert json.loads(body) == {**answer, "filename": str(tmp_path / "file.png")}


def test_mnist_recipe_saved_model_image_predictions(server, tmp_path):
    keras.utils.set_random_seed(13)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.layers[-1].kernel.assign(model.layers[-1].kernel * 0.01)
    tf.saved_model.save(model, str(tmp_path / "mnist"))
    meta = {
        "name": "mnist",
        "model": "saved_model.pb",
        "labels": "labels.txt",
        "img_channels": 1,
        "input_name": "serving_default_input_1",
        "output_name": "StatefulPartitionedCall",
        "input_node": "input_1",
        "output_node": "dense/Softmax:0",
    }
    (tmp_path / "mnist" / "params.json").write_text(json.dumps(meta))
    (tmp_path / "mnist" / "labels.txt").write_text("".join(f"{i}\n" for i in range(10)))
    tar_cfz(tmp_path, "mnist.tar.gz", "mnist")
    status, body = curl(
        'curl -v -X POST -H "Content-Encoding: gzip" -H "Content-Type: application/octet-stream" '
        f"--data-binary @./mnist.tar.gz {server.url}/upload",
        tmp_path,
    )
    assert status == 200, body
    pixels = np.random.default_rng(14).integers(0, 256, (8, 8))
    png(tmp_path / "img1.png", pixels)
    status, body = curl(
        f"curl {server.url}/predict/image -F 'image=@./img1.png' -F 'model=mnist'", tmp_path
    )
    assert status == 200, body
    x = pixels.reshape(1, 8, 8, 1).astype(np.float32)
    np.testing.assert_allclose(json.loads(body), np.asarray(model(x))[0], atol=1e-5)

    # beyond upstream: an image of another size is resized to the model's input
    big = np.random.default_rng(15).integers(0, 256, (16, 16))
    png(tmp_path / "big.png", big)
    with (tmp_path / "big.png").open("rb") as image:
        answer = requests.post(
            server.url + "/image", files={"image": image}, data={"model": "mnist"}
        )
    assert answer.status_code == 200, answer.text
    resized = tf.image.resize(big.reshape(16, 16, 1).astype(np.float32), (8, 8))[None]
    np.testing.assert_allclose(answer.json(), np.asarray(model(resized))[0], atol=1e-5)

    # a JPEG, and a colour image for a grey model (TensorFlow converts, as upstream's does)
    from PIL import Image

    Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "img1.jpg", quality=95)
    colour = np.random.default_rng(16).integers(0, 256, (8, 8, 3))
    png(tmp_path / "colour.png", colour)
    for name in ("img1.jpg", "colour.png"):
        with (tmp_path / name).open("rb") as image:
            answer = requests.post(
                server.url + "/image", files={"image": image}, data={"model": "mnist"}
            )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()) == 10


def test_bad_image_requests_are_400(server, tmp_path):
    write_bundle(keras_model(), tmp_path / "rows")
    mn.TFaaSClient(server.url).upload(tmp_path / "rows", name="rows")
    grey = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    tf.saved_model.save(grey, str(tmp_path / "grey"))
    tf.saved_model.save(grey, str(tmp_path / "colour"))
    (tmp_path / "colour" / "params.json").write_text('{"name": "colour", "img_channels": 3}')
    tar_cfz(tmp_path, "grey.tar.gz", "grey", "colour")
    answer = requests.post(server.url + "/upload", data=(tmp_path / "grey.tar.gz").read_bytes())
    assert answer.status_code == 200, answer.text
    assert requests.get(server.url + "/params/grey").json()["img_channels"] == 1  # derived
    image = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image, format="PNG")
    huge = bytearray(image.getvalue())
    huge[16:24] = (100_000).to_bytes(4, "big") * 2  # the header claims 100,000 x 100,000
    cases = [
        ({"image": ("a.png", image.getvalue())}, {"model": "rows"}, "not an image model"),
        ({"image": ("a.png", b"junk")}, {"model": "grey"}, "PNG, JPEG"),
        ({"image": ("a.png", image.getvalue()[:60])}, {"model": "grey"}, "cannot be decoded"),
        ({"image": ("a.png", bytes(huge))}, {"model": "grey"}, "pixels"),
        ({"other": ("a.png", image.getvalue())}, {"model": "grey"}, '"image"'),
        ({"image": ("a.png", image.getvalue())}, {"model": "nope"}, "unknown model"),
        ({"image": ("a.png", image.getvalue())}, {"model": "colour"}, "img_channels 3"),
    ]
    for files, data, why in cases:
        answer = requests.post(server.url + "/image", files=files, data=data)
        assert answer.status_code in (400, 404), answer.text
        assert why in answer.json()["error"]
    assert requests.post(server.url + "/image", data=b"x").status_code == 400
    # beyond upstream: /json takes an image model's pixels as flat rows, and checks their number
    flat = requests.post(server.url + "/json", json={"values": [1.0] * 64, "model": "grey"})
    np.testing.assert_allclose(flat.json(), np.asarray(grey(np.ones((1, 8, 8, 1))))[0], 1e-5)
    wrong = requests.post(server.url + "/json", json={"values": [1.0] * 60, "model": "grey"})
    assert wrong.status_code == 400
    assert "takes 64 values" in wrong.json()["error"]


# --- 6. the default model ------------------------------------------------------------------


def form_upload(server, folder: Path, name: str) -> None:
    with tarfile.open(folder.parent / f"{name}.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname=".")
    params = {**json.loads((folder / "params.json").read_text()), "name": name}
    files = {
        "model": ("model.tar.gz", (folder.parent / f"{name}.tar.gz").read_bytes()),
        "params": ("params.json", json.dumps(params)),
        "labels": ("labels.txt", (folder / "labels.txt").read_bytes()),
    }
    answer = requests.post(server.url + "/upload", data={"name": name}, files=files)
    assert answer.status_code == 200, answer.text


def test_default_model_is_the_last_form_upload_or_set_by_params(server, tmp_path):
    models = {name: keras_model(seed) for name, seed in (("a", 1), ("b", 2), ("c", 3))}
    folders = {name: write_bundle(m, tmp_path / name) for name, m in models.items()}
    x = rows(1, seed=17)[0]

    def default_answer():
        answer = requests.post(server.url + "/json", json={"keys": [], "values": x.tolist()})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def of(name):
        return np.asarray(models[name](x[None]))[0]

    form_upload(server, folders["a"], "a")
    form_upload(server, folders["b"], "b")
    np.testing.assert_allclose(default_answer(), of("b"), atol=1e-5)
    assert requests.post(server.url + "/params", json={"name": "a"}).status_code == 200
    np.testing.assert_allclose(default_answer(), of("a"), atol=1e-5)
    mn.TFaaSClient(server.url).upload(folders["c"], name="c")  # a tarball: as upstream, no change
    np.testing.assert_allclose(default_answer(), of("a"), atol=1e-5)
    assert requests.get(server.url + "/status").json()["default_model"] == "a"
    requests.delete(server.url + "/delete/a")
    answer = requests.post(server.url + "/json", json={"values": x.tolist()})
    assert answer.status_code == 400
    assert "default" in answer.json()["error"]


# --- 7. /status ----------------------------------------------------------------------------------


def test_status_has_upstreams_memory_and_cpu_and_counts_posts_only(server):
    before = requests.get(server.url + "/status").json()
    requests.delete(server.url + "/delete/nothing")
    requests.post(server.url + "/json", json={"values": [1.0]})
    status = requests.get(server.url + "/status").json()
    assert status["postRequests"] == before["postRequests"] + 1
    assert status["getRequests"] == before["getRequests"] + 1
    for kind in ("Virtual", "Swap"):
        memory = status["Memory"][kind]
        assert set(memory) == {"total", "free", "used", "usedPercent"}
        assert all(isinstance(value, int) for key, value in memory.items() if key != "usedPercent")
        assert 0 <= memory["usedPercent"] <= 100
    assert status["Memory"]["Virtual"]["total"] > 0
    assert len(status["CPU"]) == os.cpu_count()
    assert all(0 <= cpu <= 100 for cpu in status["CPU"])
    assert set(status["Load"]) == {"load1", "load5", "load15"}
    assert {"Uptime", "getRequests", "postRequests"} <= set(status)
