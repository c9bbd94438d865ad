"""Open Inference v2 and TF Serving REST, driven by the official clients against a real server.

NVIDIA's ``tritonclient.http`` runs in this process. KServe's
``InferenceRESTClient`` runs in a subprocess: ``kserve`` and
``tritonclient.grpc`` register the same ``inference.*`` protobuf messages, so
the two cannot be imported into one process.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException
from v2_bundles import N, local, rows, write_masked, write_plain

import mlaas4hep_nb as mn

OUT = "output_0"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module: ``alpha`` (plain) and ``masky`` (with a mask signature)."""
    root = tmp_path_factory.mktemp("v2rest")
    plain, plain_model = write_plain(root / "alpha")
    masked, masked_model = write_masked(root / "masky")
    with mn.tfaas.serve_in_background(root / "served") as handle:
        client = mn.TFaaSClient(handle.url)
        client.upload(plain, name="alpha")
        client.upload(masked, name="masky")
        handle.keras = {"alpha": plain_model, "masky": masked_model}
        yield handle


@pytest.fixture(scope="module")
def triton(server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))


def by_json(server, x: np.ndarray, model: str = "alpha") -> np.ndarray:
    """The answer of upstream's ``/json`` route for the rows ``x``."""
    answer = requests.post(server.url + "/json", json={"values": x.tolist(), "model": model})
    assert answer.status_code == 200, answer.text
    return np.asarray(answer.json(), dtype=np.float32)


def triton_input(x: np.ndarray, name: str = "inputs", datatype: str = "FP32", binary=True):
    tensor = httpclient.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def server_error(call, status: str, *words: str) -> str:
    """Run ``call``; it must raise the client's InferenceServerException with ``words``."""
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == status, info.value.message()
    for word in words:
        assert word in info.value.message(), info.value.message()
    return info.value.message()


# --- tritonclient.http ------------------------------------------------------------------


def test_triton_default_binary_infer_gives_the_json_numbers(server, triton):
    x = rows(300, seed=2)
    result = triton.infer("alpha", [triton_input(x)])
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 300 * 4
    y = result.as_numpy(OUT)
    assert y.shape == (300, 1)
    np.testing.assert_allclose(y, by_json(server, x), atol=1e-5)
    np.testing.assert_allclose(y, local(server.keras["alpha"], x), atol=1e-5)


def test_triton_json_tensors_and_outputs(server, triton):
    x = rows(4, seed=3)
    wanted = [httpclient.InferRequestedOutput(OUT, binary_data=False)]
    result = triton.infer(
        "alpha", [triton_input(x, binary=False)], outputs=wanted, request_id="r-7"
    )
    response = result.get_response()
    assert response["id"] == "r-7"
    assert len(response["outputs"][0]["data"]) == 4
    np.testing.assert_allclose(result.as_numpy(OUT), by_json(server, x), atol=1e-5)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_triton_compressed_requests_and_answers(server, triton, algorithm):
    x = rows(500, seed=4)
    result = triton.infer(
        "alpha",
        [triton_input(x)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_allclose(result.as_numpy(OUT), by_json(server, x), atol=1e-5)


def test_triton_versions(server, triton):
    x = rows(3, seed=5)
    result = triton.infer("alpha", [triton_input(x)], model_version="1")
    np.testing.assert_allclose(result.as_numpy(OUT), by_json(server, x), atol=1e-5)
    assert triton.get_model_metadata("alpha", "1")["versions"] == ["1"]
    assert triton.get_model_config("alpha", "1")["name"] == "alpha"
    assert triton.is_model_ready("alpha", "1")
    assert not triton.is_model_ready("alpha", "2")
    for call in (
        lambda: triton.infer("alpha", [triton_input(x)], model_version="2"),
        lambda: triton.get_model_metadata("alpha", "2"),
        lambda: triton.get_model_config("alpha", "2"),
    ):
        server_error(call, "404", "no version '2'")


def test_triton_metadata_config_index_and_server(triton):
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("alpha")
    meta = triton.get_model_metadata("alpha")
    assert meta["inputs"] == [{"name": "inputs", "datatype": "FP32", "shape": [-1, N]}]
    assert meta["outputs"] == [{"name": OUT, "datatype": "FP32", "shape": [-1, 1]}]
    masked = [tensor["name"] for tensor in triton.get_model_metadata("masky")["inputs"]]
    assert masked == ["inputs", "mask"]
    config = triton.get_model_config("alpha")
    assert config["platform"] == "tensorflow_savedmodel"
    assert config["max_batch_size"] > 0
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["input"][0]["dims"] == [N]
    index = triton.get_model_repository_index()
    assert [(m["name"], m["version"], m["state"]) for m in index] == [
        ("alpha", "1", "READY"),
        ("masky", "1", "READY"),
    ]
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    server_error(lambda: triton.get_model_metadata("nope"), "404", "unknown model 'nope'")


@pytest.mark.parametrize(
    "dtype", ["float16", "float64", "int8", "int16", "int32", "int64", "uint8", "uint64"]
)
def test_triton_numeric_datatypes_convert_to_fp32(server, triton, dtype):
    x = (rows(5, seed=6) * 100).round()  # integers that every datatype holds exactly
    datatype = {"float16": "FP16", "float64": "FP64"}.get(dtype, dtype.upper())
    for binary in (True, False) if dtype != "float16" else (True,):
        tensor = triton_input(x.astype(dtype), datatype=datatype, binary=binary)
        result = triton.infer("alpha", [tensor])
        np.testing.assert_allclose(result.as_numpy(OUT), by_json(server, x), atol=1e-5)


def test_triton_refusals_carry_the_server_message(triton):
    x = rows(2, seed=7)

    def infer(*inputs, outputs=None, model="alpha"):
        return lambda: triton.infer(model, list(inputs), outputs=outputs)

    server_error(infer(triton_input(x > 0.5, datatype="BOOL")), "400", "'inputs'", "BOOL")
    text = np.array([[b"a"] * N] * 2, dtype=object)
    server_error(infer(triton_input(text, datatype="BYTES")), "400", "'inputs'", "BYTES")
    huge = np.full((2, N), 1e39)
    server_error(infer(triton_input(huge, datatype="FP64")), "400", "FP32 range")
    server_error(infer(triton_input(x, name="input_1")), "400", "'input_1'", "['inputs']")
    bogus = [httpclient.InferRequestedOutput("bogus")]
    server_error(infer(triton_input(x), outputs=bogus), "400", "no output 'bogus'", OUT)
    shaped = triton_input(x)
    shaped.set_shape([3, N])  # the binary data still hold 2 rows
    server_error(infer(shaped), "400", "holds 12 values; shape [3, 6] needs 18")
    wide = triton_input(rows(2, seed=8)[:, :4].copy())
    server_error(infer(wide), "400", "4 values per row", f"takes {N}")
    server_error(infer(triton_input(x), model="nope"), "404", "unknown model 'nope'")


def test_triton_mask_input(server, triton):
    x = rows(8, seed=9)
    mask = (rows(8, seed=10) > 0.3).astype(np.float32)
    result = triton.infer("masky", [triton_input(x), triton_input(mask, name="mask")])
    np.testing.assert_allclose(
        result.as_numpy(OUT), local(server.keras["masky"], x, mask), atol=1e-5
    )
    alone = triton.infer("masky", [triton_input(x)]).as_numpy(OUT)
    np.testing.assert_allclose(alone, by_json(server, x, "masky"), atol=1e-5)
    server_error(
        lambda: triton.infer("masky", [triton_input(x), triton_input(mask[:2], name="mask")]),
        "400",
        "'mask' has shape [2, 6]",
    )


# --- KServe's InferenceRESTClient, in a subprocess -----------------------------------------

KSERVE = """
import asyncio, json, sys
import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

url, x = sys.argv[1], np.asarray(json.loads(sys.stdin.read()), dtype=np.float32)

def request(model, name="inputs", binary=True):
    infer_input = InferInput(name=name, shape=list(x.shape), datatype="FP32")
    infer_input.set_data_from_numpy(x, binary_data=binary)
    return InferRequest(model_name=model, infer_inputs=[infer_input])

async def main():
    out = {}
    client = InferenceRESTClient(config=RESTConfig(protocol="v2"))
    answer = await client.infer(url, request("alpha"), model_name="alpha")
    out["binary"] = answer.outputs[0].as_numpy().tolist()
    answer = await client.infer(url, request("alpha", binary=False), model_name="alpha")
    out["json"] = answer.outputs[0].as_numpy().tolist()
    out["ready"] = await client.is_model_ready(url, "alpha")
    for case, model, name in (("bad_name", "alpha", "x"), ("unknown", "nope", "inputs")):
        try:
            await client.infer(url, request(model, name), model_name=model)
        except httpx.HTTPStatusError as err:
            out[case] = [type(err).__name__, err.response.status_code, str(err)]
    await client.close()
    v1 = InferenceRESTClient(config=RESTConfig(protocol="v1"))
    answer = await v1.infer(url, {"instances": x.tolist()}, model_name="alpha")
    out["v1"] = answer["predictions"]
    await v1.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_kserve_rest_client(server):
    x = rows(20, seed=11)
    done = subprocess.run(
        [sys.executable, "-c", KSERVE, server.url],
        input=json.dumps(x.tolist()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    expected = by_json(server, x)
    for case in ("binary", "json", "v1"):
        np.testing.assert_allclose(np.asarray(out[case]).reshape(-1, 1), expected, atol=1e-5)
    assert out["ready"] is True
    kind, status, message = out["bad_name"]
    assert (kind, status) == ("HTTPStatusError", 400)
    assert "no input 'x'" in message
    assert "['inputs']" in message
    assert out["unknown"][1] == 404
    assert "unknown model 'nope'" in out["unknown"][2]


# --- the wire format, by hand -------------------------------------------------------------


def infer_url(server, model: str = "alpha") -> str:
    return f"{server.url}/v2/models/{model}/infer"


def binary_body(header: dict, *chunks: bytes) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), {"Inference-Header-Content-Length": str(len(head))}


def test_binary_bodies_are_checked(server):
    x = rows(2, seed=12)
    raw = x.tobytes()
    tensor = {
        "name": "inputs",
        "datatype": "FP32",
        "shape": [2, N],
        "parameters": {"binary_data_size": len(raw)},
    }
    body, headers = binary_body({"inputs": [tensor]}, raw)
    answer = requests.post(infer_url(server), data=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    np.testing.assert_allclose(answer.json()["outputs"][0]["data"], by_json(server, x).ravel())

    def refused(body, headers, *words):
        answer = requests.post(infer_url(server), data=body, headers=headers)
        assert answer.status_code == 400, answer.text
        for word in words:
            assert word in answer.json()["error"]

    refused(body, {}, "malformed JSON", "Inference-Header-Content-Length")
    refused(body, {"Inference-Header-Content-Length": str(len(body) + 1)}, "at most")
    refused(*binary_body({"inputs": [tensor]}, raw, b"\0" * 8), "8 bytes", "belong to no input")
    refused(*binary_body({"inputs": [tensor]}, raw[:-4]), "binary_data_size 48", "44 bytes")
    both = {**tensor, "data": x.ravel().tolist()}
    refused(*binary_body({"inputs": [both]}, raw), "both")
    shared = {**tensor, "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 4}}
    refused(*binary_body({"inputs": [shared]}), "shared memory")
    classify = [{"name": OUT, "parameters": {"classification": 2}}]
    refused(*binary_body({"inputs": [tensor], "outputs": classify}, raw), "classification")


def test_json_sizes_name_both_counts_and_binary_outputs_on_request(server):
    x = rows(1, seed=13)
    tensor = {"name": "inputs", "datatype": "FP32", "shape": [1, N], "data": x.ravel().tolist()}
    values = x.ravel().tolist()
    for data, held in (([*values, 0.5], N + 1), (values[:-1], N - 1)):
        answer = requests.post(infer_url(server), json={"inputs": [{**tensor, "data": data}]})
        assert answer.status_code == 400
        assert answer.json()["error"] == (
            f"input 'inputs' holds {held} values; shape [1, {N}] needs {N}"
        )
    asked = {"inputs": [tensor], "parameters": {"binary_data_output": True}}
    answer = requests.post(infer_url(server), json=asked)
    assert answer.headers["content-type"] == "application/octet-stream"
    size = int(answer.headers["Inference-Header-Content-Length"])
    header = json.loads(answer.content[:size])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 4}
    y = np.frombuffer(answer.content[size:], dtype="<f4")
    np.testing.assert_allclose(y, by_json(server, x).ravel(), atol=1e-5)
    one_json = {**asked, "outputs": [{"name": OUT, "parameters": {"binary_data": False}}]}
    assert "data" in requests.post(infer_url(server), json=one_json).json()["outputs"][0]


def test_content_encodings(server):
    x = rows(400, seed=14)
    tensor = {"name": "inputs", "datatype": "FP32", "shape": [400, N], "data": x.tolist()}
    body = json.dumps({"inputs": [tensor]}).encode()
    expected = by_json(server, x).ravel()
    for coding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        answer = requests.post(
            infer_url(server),
            data=packed,
            headers={"Content-Encoding": coding, "Accept-Encoding": coding},
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-encoding"] == coding
        np.testing.assert_allclose(answer.json()["outputs"][0]["data"], expected, atol=1e-5)
    plain = requests.post(infer_url(server), data=body, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    bad = requests.post(infer_url(server), data=body, headers={"Content-Encoding": "gzip"})
    assert bad.status_code == 400
    assert "not valid gzip" in bad.json()["error"]
    unknown = requests.post(infer_url(server), data=body, headers={"Content-Encoding": "br"})
    assert unknown.status_code == 415
    tf_body = gzip.compress(json.dumps({"instances": x[:3].tolist()}).encode())
    answer = requests.post(
        server.url + "/v1/models/alpha:predict", data=tf_body, headers={"Content-Encoding": "gzip"}
    )
    np.testing.assert_allclose(answer.json()["predictions"], by_json(server, x[:3]), atol=1e-5)


def test_repository_index_and_version_routes(server):
    url = server.url + "/v2/repository/index"
    assert [m["name"] for m in requests.post(url, json={"ready": True}).json()] == [
        "alpha",
        "masky",
    ]
    assert requests.post(url, json={"ready": "yes"}).status_code == 400
    base = server.url + "/v2/models/alpha/versions/"
    assert requests.get(base + "1").json()["name"] == "alpha"
    assert requests.get(base + "1/ready").json()["ready"] is True
    assert requests.get(base + "1/config").json()["name"] == "alpha"
    missing = requests.get(base + "7/ready")
    assert missing.status_code == 404
    assert "no version '7'" in missing.json()["error"]


# --- TF Serving REST ----------------------------------------------------------------------


def test_tf_serving_metadata(server):
    meta = requests.get(server.url + "/v1/models/alpha/metadata").json()
    assert meta["model_spec"] == {"name": "alpha", "signature_name": "", "version": "1"}
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    assert sorted(signatures) == ["serving", "serving_default"]
    inputs = signatures["serving_default"]["inputs"]
    assert inputs["inputs"]["dtype"] == "DT_FLOAT"
    assert inputs["inputs"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": str(N), "name": ""},
    ]
    assert inputs["inputs"]["name"].endswith(":0")
    assert list(signatures["serving"]["inputs"]) == ["default_inputs_input"]
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"
    masked = requests.get(server.url + "/v1/models/masky/versions/1/metadata").json()
    with_mask = masked["metadata"]["signature_def"]["signature_def"]["serving_with_mask"]
    assert sorted(with_mask["inputs"]) == ["inputs", "mask"]
    assert requests.get(server.url + "/v1/models/alpha/versions/2/metadata").status_code == 404


def test_tf_serving_versions_and_labels(server):
    x = rows(3, seed=15)
    base = server.url + "/v1/models/alpha"
    assert requests.get(base + "/versions/1").json()["model_version_status"][0]["version"] == "1"
    answer = requests.post(base + "/versions/1:predict", json={"instances": x.tolist()})
    np.testing.assert_allclose(answer.json()["predictions"], by_json(server, x), atol=1e-5)
    missing = requests.post(base + "/versions/2:predict", json={"instances": x.tolist()})
    assert missing.status_code == 404
    assert "no version '2'" in missing.json()["error"]
    for url in (base + "/labels/stable:predict", base + "/labels/stable"):
        label = requests.request(
            "POST" if url.endswith("predict") else "GET", url, json={"instances": x.tolist()}
        )
        assert label.status_code == 400
        assert "Unrecognized servable version label: stable" in label.json()["error"]


def test_tf_serving_signatures_and_instance_keys(server):
    x = rows(3, seed=16)
    url = server.url + "/v1/models/{}:predict"
    expected = by_json(server, x)

    def predict(body, model="alpha"):
        return requests.post(url.format(model), json=body)

    nope = predict({"signature_name": "nope", "instances": x.tolist()})
    assert nope.status_code == 400
    assert "no signature 'nope'" in nope.json()["error"]
    assert "['serving', 'serving_default']" in nope.json()["error"]
    extra = [{"inputs": row, "other": 1} for row in x.tolist()]
    answer = predict({"instances": extra})
    assert answer.status_code == 400
    assert "key 'other'" in answer.json()["error"]
    wrong = predict({"inputs": {"input_1": x.tolist()}})
    assert wrong.status_code == 400
    assert "'input_1'" in wrong.json()["error"]
    upstream = [{"default_inputs_input": row} for row in x.tolist()]
    answer = predict({"signature_name": "serving", "instances": upstream})
    np.testing.assert_allclose(answer.json()["predictions"], expected, atol=1e-5)
    mask = (rows(3, seed=17) > 0.4).astype(np.float32)
    columns = {"inputs": x.tolist(), "mask": mask.tolist()}
    answer = predict({"signature_name": "serving_with_mask", "inputs": columns}, "masky")
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(
        answer.json()["outputs"], local(server.keras["masky"], x, mask), atol=1e-5
    )
    rows_only = predict({"signature_name": "serving_with_mask", "instances": x.tolist()}, "masky")
    assert rows_only.status_code == 400
    assert "send objects keyed by input name" in rows_only.json()["error"]


def test_openapi_lists_the_routes(server):
    paths = requests.get(server.url + "/openapi.json").json()["paths"]
    for path in (
        "/v2/models/{name}/versions/{version}/infer",
        "/v2/models/{name}/config",
        "/v2/repository/index",
        "/v1/models/{name}/metadata",
        "/v1/models/{name}/versions/{version}:predict",
        "/v1/models/{name}/labels/{label}:predict",
    ):
        assert path in paths
