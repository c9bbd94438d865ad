"""params.json is checked against its schema at upload: a bad one is a 400 naming the key."""

from __future__ import annotations

import io
import json
import tarfile

import keras
import pytest
import requests

import mlaas4hep_nb as mn
from mlaas4hep_nb.bundle import write_bundle
from mlaas4hep_nb.tfaas.server.params_schema import MAX_DEPTH, ParamsError, check_params

GZIP_TAR = {"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"}
BIG = 2**64  # one more than the largest integer orjson writes


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# (what to merge into a good params.json as JSON text, the key the error names, what it says)
BAD = {
    "64-bit": (f'"extra": {{"deep": [1, {BIG}]}}', "extra.deep[1]", "64-bit"),
    "negative 64-bit": (f'"count": -{BIG}', "count", "64-bit"),
    "op list": ('"op": []', "op", "a signature or graph op name"),
    "output_name object": ('"output_name": {"a": 1}', "output_name", "a string or null"),
    "input_node number": ('"inputNode": 3', "inputNode", "a string or null"),
    "labels list": ('"labels": ["a"]', "labels", "a file name"),
    "labels NUL": ('"labels": "a\\u0000b"', "labels", "a file name"),
    "img_channels text": ('"img_channels": "3"', "img_channels", "an integer"),
    "features numbers": ('"features": [1, 2]', "features", "a list of strings"),
    "timestamp number": ('"timestamp": 1700000000', "timestamp", "a string or null"),
    "normalize": ('"normalize": "log"', "normalize", "one of 'minmax'"),
    "spec list": ('"spec": [1]', "spec", "an object or null"),
    "NaN": ('"description": NaN', "description", "not JSON"),
    "surrogate": ('"note": "\\ud800"', "note", "surrogate"),
    "surrogate key": ('"\\udfff": 1', "(its name)", "surrogate"),
    "too deep": (f'"deep": {nested(MAX_DEPTH + 2)}', "deep", "levels deep"),
    "deeper than Python reads": (f'"deep": {nested(100_000)}', "", "too deeply"),
}

SPEC = {
    "version": 1,
    "tree": "Events",
    "cut": None,
    "n_events": 10,
    "files": ["a.root"],
    "skipped": {},
    "fingerprint": None,
    "features": ["x"],
    "normalize": "minmax",
    "serving_mask": {},
    "branches": [
        {
            "name": "x",
            "dtype": "float32",
            "jagged": False,
            "pad": 1,
            "max_multiplicity": 1,
            "count": 10,
            "nonfinite": 0,
            "min": 0.0,
            "max": 1.0,
            "mean": 0.5,
            "std": 0.1,
        }
    ],
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    inputs = keras.Input((3,), name="inputs")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    return write_bundle(model, tmp_path_factory.mktemp("params") / "b", features=["a", "b", "c"])


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle):
    with mn.tfaas.serve_in_background(tmp_path_factory.mktemp("served")) as handle:
        mn.TFaaSClient(handle.url).upload(bundle, name="good")
        yield handle


def with_extra(params_text: str, extra: str) -> str:
    """``params_text`` (a JSON object) with the JSON members ``extra`` added at its end."""
    body = params_text.rstrip().removesuffix("}")
    return f"{body}, {extra}}}"


def tarball(bundle, name: str, params_text: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(bundle.rglob("*")):
            relative = path.relative_to(bundle).as_posix()
            if relative != "params.json":
                tar.add(path, arcname=f"{name}/{relative}", recursive=False)
        data = params_text.encode()
        info = tarfile.TarInfo(f"{name}/params.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def assert_still_fine(server) -> None:
    """Every route that echoes params answers, and the good model is served."""
    listed = requests.get(server.url + "/models")
    assert listed.status_code == 200, listed.text
    assert [m["name"] for m in listed.json()] == ["good"]
    assert requests.get(server.url + "/params/good").status_code == 200
    assert requests.get(server.url + "/status").status_code == 200
    answer = requests.post(server.url + "/json", json={"values": [0.1, 0.2, 0.3], "model": "good"})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("case", BAD)
def test_bad_params_in_a_tarball_is_400_naming_the_key(server, bundle, case):
    extra, key, what = BAD[case]
    params = with_extra((bundle / "params.json").read_text(), extra)
    data = tarball(bundle, "bad", params)
    answer = requests.post(server.url + "/upload", data=data, headers=GZIP_TAR)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert key in error
    assert what in error
    assert_still_fine(server)


@pytest.mark.parametrize("case", ["64-bit", "op list", "output_name object", "too deep"])
def test_bad_params_in_a_form_is_400_naming_the_key(server, bundle, case):
    extra, key, what = BAD[case]
    params = with_extra((bundle / "params.json").read_text(), extra)
    model = tarball(bundle, "inner", (bundle / "params.json").read_text())
    files = {
        "model": ("model.tar.gz", model),
        "params": ("params.json", params.encode()),
        "labels": ("labels.txt", b"background\nsignal\n"),
    }
    answer = requests.post(server.url + "/upload", data={"name": "badform"}, files=files)
    assert answer.status_code == 400, answer.text
    assert key in answer.json()["error"]
    assert what in answer.json()["error"]
    assert_still_fine(server)


def test_a_bad_feature_spec_is_400(server, bundle):
    params = json.loads((bundle / "params.json").read_text())
    branch = {**SPEC["branches"][0], "pad": "1"}
    for spec, key in (
        ({**SPEC, "branches": [branch]}, "spec.branches[0].pad"),
        ({**SPEC, "files": "a.root"}, "spec.files"),
        ({**SPEC, "serving_mask": {"x": 1}}, "spec.serving_mask"),
        ({**SPEC, "version": 99}, "FeatureSpec version 99"),
    ):
        data = tarball(bundle, "badspec", json.dumps({**params, "spec": spec}))
        answer = requests.post(server.url + "/upload", data=data, headers=GZIP_TAR)
        assert answer.status_code == 400, answer.text
        assert key in answer.json()["error"]
    assert_still_fine(server)


def test_unknown_keys_are_kept_and_echoed(server, bundle):
    params = json.loads((bundle / "params.json").read_text())
    extra = {"upstream_key": {"a": [1, 2**64 - 1, -(2**63)]}, "options": ["x"], "spec": SPEC}
    data = tarball(bundle, "extra", json.dumps({**params, **extra}))
    answer = requests.post(server.url + "/upload", data=data, headers=GZIP_TAR)
    assert answer.status_code == 200, answer.text
    echoed = requests.get(server.url + "/params/extra").json()
    assert echoed["upstream_key"] == extra["upstream_key"]
    assert echoed["spec"]["serving_mask"] == {}
    assert requests.get(server.url + "/models").status_code == 200
    requests.delete(server.url + "/delete/extra")


def test_check_params_accepts_what_write_bundle_writes(bundle):
    params = json.loads((bundle / "params.json").read_text())
    assert check_params({**params, "spec": SPEC}) is not None
    with pytest.raises(ParamsError, match="JSON object"):
        check_params([params])
