"""The gRPC port, end to end with the official clients on 127.0.0.1.

Triton's ``tritonclient.grpc`` and TF Serving's ``tensorflow-serving-api`` run
in this process; KServe's ``InferenceGRPCClient`` in a subprocess, since kserve
and tritonclient register the same ``inference.*`` protobuf messages and cannot
be imported in one process.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import grpc
import numpy as np
import psutil
import pytest
import requests
import tensorflow as tf
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from support import free_port, wait_until_up
from tritonclient.utils import InferenceServerException
from v2_bundles import N, local, plain_model, rows, write_masked, write_plain

import mlaas4hep_nb as mn
from mlaas4hep_nb.bundle import write_bundle

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict:
    """Bundles as (folder, keras model): alpha and beta (same shape, other weights), masked."""
    root = tmp_path_factory.mktemp("grpc-bundles")
    beta = plain_model(seed=7)
    return {
        "alpha": write_plain(root / "alpha"),
        "beta": (write_bundle(beta, root / "beta", features=[f"f{i}" for i in range(N)]), beta),
        "masked": write_masked(root / "masked"),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundles):
    handle = mn.tfaas.serve_in_background(tmp_path_factory.mktemp("grpc-served"), grpc_port=0)
    client = mn.TFaaSClient(handle.url)
    for name in ("alpha", "masked"):
        client.upload(bundles[name][0], name=name)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def triton_client(server) -> triton.InferenceServerClient:
    client = triton.InferenceServerClient(server.grpc_target)
    yield client
    client.close()


def json_answer(server, name: str, x: np.ndarray) -> np.ndarray:
    answer = requests.post(server.url + "/json", json={"model": name, "values": x.tolist()})
    assert answer.status_code == 200, answer.text
    return np.asarray(answer.json(), dtype=np.float32)


def triton_input(x: np.ndarray, name: str = "inputs", datatype: str = "FP32") -> triton.InferInput:
    tensor = triton.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


def refused(call, code: grpc.StatusCode, *words: str) -> None:
    """``call()`` raises tritonclient's error with the status ``code``, ``words`` in its text."""
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == str(code), info.value
    for word in words:
        assert word in info.value.message(), info.value.message()


# --- KServe v2 / Triton ----------------------------------------------------------------------


def test_triton_infer_matches_json_and_the_local_model(server, triton_client, bundles):
    x = rows(5)
    result = triton_client.infer("alpha", [triton_input(x)], request_id="r1")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("alpha", "1", "r1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("output_0", "FP32", [5, 1])
    ]
    y = result.as_numpy("output_0")
    np.testing.assert_allclose(y, json_answer(server, "alpha", x), atol=1e-5)
    np.testing.assert_allclose(y, local(bundles["alpha"][1], x), atol=1e-5)
    one = triton_client.infer("alpha", [triton_input(x[0])]).as_numpy("output_0")
    np.testing.assert_allclose(one, y[:1], atol=1e-5)
    # other numeric datatypes are converted to FP32; a requested output is answered
    ints = np.arange(2 * N, dtype=np.int64).reshape(2, N) % 3
    outputs = [triton.InferRequestedOutput("output_0")]
    as_int = triton_client.infer("alpha", [triton_input(ints, datatype="INT64")], outputs=outputs)
    np.testing.assert_allclose(
        as_int.as_numpy("output_0"),
        json_answer(server, "alpha", ints.astype(np.float32)),
        atol=1e-5,
    )


def test_typed_contents_are_decoded_like_raw_ones(server, triton_client):
    """Inputs in typed ``contents`` (clients that send no raw bytes), with Triton's own stubs."""
    stub = triton.service_pb2_grpc.GRPCInferenceServiceStub(
        grpc.insecure_channel(server.grpc_target)
    )
    x = rows(3, seed=4)
    expected = json_answer(server, "alpha", x)
    for datatype, field, data in (
        ("FP32", "fp32_contents", x),
        ("FP64", "fp64_contents", x.astype(np.float64)),
        ("INT32", "int_contents", np.round(x * 4).astype(np.int32)),
    ):
        request = triton.service_pb2.ModelInferRequest(model_name="alpha")
        tensor = request.inputs.add(name="inputs", datatype=datatype, shape=[3, N])
        getattr(tensor.contents, field).extend(data.ravel().tolist())
        response = stub.ModelInfer(request)
        y = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(3, 1)
        want = expected if datatype != "INT32" else json_answer(server, "alpha", data.astype("f4"))
        np.testing.assert_allclose(y, want, atol=1e-5)
    request = triton.service_pb2.ModelInferRequest(model_name="alpha")
    request.inputs.add(name="inputs", datatype="FP32", shape=[2, N]).contents.fp32_contents.extend(
        [0.5] * N
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "holds 6 values; shape [2, 6] needs 12" in info.value.details()


def test_mask_input_goes_through_serving_with_mask(server, triton_client, bundles):
    x = rows(4, seed=2)
    mask = np.ones_like(x)
    mask[:, 3:] = 0
    result = triton_client.infer("masked", [triton_input(x), triton_input(mask, "mask")])
    np.testing.assert_allclose(
        result.as_numpy("output_0"), local(bundles["masked"][1], x, mask), atol=1e-5
    )


def test_health_metadata_config_index_and_statistics(server, triton_client):
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("alpha")
    assert not triton_client.is_model_ready("nope")
    assert not triton_client.is_model_ready("alpha", "2")
    server_meta = triton_client.get_server_metadata(as_json=True)
    assert server_meta["name"] == "mlaas4hep_nb"
    assert server_meta["version"] == mn.__version__
    meta = triton_client.get_model_metadata("alpha", as_json=True)
    assert meta["inputs"] == [{"name": "inputs", "datatype": "FP32", "shape": ["-1", "6"]}]
    assert meta["outputs"] == [{"name": "output_0", "datatype": "FP32", "shape": ["-1", "1"]}]
    assert meta["versions"] == ["1"]
    http_meta = requests.get(server.url + "/v2/models/alpha").json()
    assert meta["platform"] == http_meta["platform"]
    masked = triton_client.get_model_metadata("masked", as_json=True)
    assert [i["name"] for i in masked["inputs"]] == ["inputs", "mask"]
    config = triton_client.get_model_config("alpha", as_json=True)["config"]
    assert config["max_batch_size"] == server.app.max_rows
    assert config["input"] == [{"name": "inputs", "data_type": "TYPE_FP32", "dims": ["6"]}]
    assert config["output"][0]["dims"] == ["1"]
    index = triton_client.get_model_repository_index(as_json=True)["models"]
    assert {"name": "alpha", "version": "1", "state": "READY"} in index

    def stats() -> dict:
        return triton_client.get_inference_statistics("alpha", as_json=True)["model_stats"][0]

    before = stats()
    triton_client.infer("alpha", [triton_input(rows(3))])
    json_answer(server, "alpha", rows(2))  # HTTP requests count too
    after = stats()
    success = after["inference_stats"]["success"]
    assert int(success["count"]) == int(before["inference_stats"]["success"].get("count", 0)) + 2
    assert int(success["ns"]) > int(before["inference_stats"]["success"].get("ns", 0))
    assert int(after["inference_count"]) == int(before.get("inference_count", 0)) + 5
    assert int(after["execution_count"]) >= 1
    assert int(after["last_inference"]) >= time.time() * 1000 - 60_000
    everything = triton_client.get_inference_statistics(as_json=True)["model_stats"]
    assert [s["name"] for s in everything] == ["alpha", "masked"]


def test_errors_carry_the_status_code_and_the_servers_message(triton_client):
    x = rows(2)
    infer = triton_client.infer
    code = grpc.StatusCode
    refused(lambda: infer("nope", [triton_input(x)]), code.NOT_FOUND, "unknown model 'nope'")
    refused(lambda: infer("alpha", [triton_input(x)], "2"), code.NOT_FOUND, "no version '2'")
    refused(lambda: infer("alpha", [triton_input(x, "x")]), code.INVALID_ARGUMENT, "no input 'x'")
    wide = rows(2)[:, :4]
    refused(lambda: infer("alpha", [triton_input(wide)]), code.INVALID_ARGUMENT, "takes 6")
    words = np.array([[b"a"] * N], dtype=np.object_)
    refused(
        lambda: infer("alpha", [triton_input(words, datatype="BYTES")]),
        code.INVALID_ARGUMENT,
        "is BYTES",
    )
    outputs = [triton.InferRequestedOutput("nope")]
    refused(
        lambda: infer("alpha", [triton_input(x)], outputs=outputs),
        code.INVALID_ARGUMENT,
        "no output 'nope'",
    )
    refused(lambda: triton_client.get_model_metadata("nope"), code.NOT_FOUND, "nope")
    refused(lambda: triton_client.get_model_config("alpha", "7"), code.NOT_FOUND, "'7'")
    # Triton methods not served here
    refused(triton_client.get_system_shared_memory_status, code.UNIMPLEMENTED)
    refused(lambda: triton_client.load_model("alpha"), code.UNIMPLEMENTED)


def test_an_http_upload_is_served_over_grpc_at_once(server, triton_client, bundles):
    folder, model = bundles["beta"]
    x = rows(3, seed=8)
    mn.TFaaSClient(server.url).upload(folder, name="fresh")
    y = triton_client.infer("fresh", [triton_input(x)]).as_numpy("output_0")
    np.testing.assert_allclose(y, local(model, x), atol=1e-5)
    mn.TFaaSClient(server.url).delete("fresh")
    refused(lambda: triton_client.infer("fresh", [triton_input(x)]), grpc.StatusCode.NOT_FOUND)


def test_a_reupload_during_a_grpc_stream_gives_old_or_new_answers(server, bundles):
    """2 s of 16 concurrent gRPC requests while the model is uploaded again and again."""
    client = mn.TFaaSClient(server.url)
    client.upload(bundles["alpha"][0], name="swap")
    x = rows(3, seed=11)
    expected = {name: local(bundles[name][1], x) for name in ("alpha", "beta")}
    seen = {"alpha": 0, "beta": 0}

    async def stream(grpc_client, deadline: float) -> None:
        while time.monotonic() < deadline:
            result = await grpc_client.infer("swap", [triton_input(x)])
            y = result.as_numpy("output_0")
            matches = [n for n, e in expected.items() if np.allclose(y, e, atol=1e-5)]
            assert len(matches) == 1, f"an answer of neither model (or of both): {y.ravel()}"
            seen[matches[0]] += 1

    async def uploads(deadline: float) -> int:
        count = 0
        while time.monotonic() < deadline - 0.3:
            name = ("beta", "alpha")[count % 2]
            await asyncio.to_thread(client.upload, bundles[name][0], name="swap")
            count += 1
        return count

    async def main() -> int:
        async with triton_aio.InferenceServerClient(server.grpc_target) as grpc_client:
            deadline = time.monotonic() + 2
            streams = [stream(grpc_client, deadline) for _ in range(16)]
            *_, count = await asyncio.gather(*streams, uploads(deadline))
            return count

    assert asyncio.run(main()) >= 2
    assert seen["alpha"] > 0
    assert seen["beta"] > 0


def test_the_token_guards_grpc_with_token_all_as_it_does_http(tmp_path, bundles):
    with mn.tfaas.serve_in_background(tmp_path, grpc_port=0, token=TOKEN, token_all=True) as handle:
        mn.TFaaSClient(handle.url, token=TOKEN).upload(bundles["alpha"][0], name="alpha")
        client = triton.InferenceServerClient(handle.grpc_target)
        assert client.is_server_live()  # the health checks stay open, as over HTTP
        assert client.is_server_ready()
        x = rows(2)
        for headers in (None, {"authorization": "Bearer wrong"}):
            refused(
                lambda headers=headers: client.infer("alpha", [triton_input(x)], headers=headers),
                grpc.StatusCode.UNAUTHENTICATED,
                "authorization: Bearer <token>",
            )
        refused(lambda: client.get_model_metadata("alpha"), grpc.StatusCode.UNAUTHENTICATED)
        good = {"authorization": f"Bearer {TOKEN}"}
        y = client.infer("alpha", [triton_input(x)], headers=good).as_numpy("output_0")
        np.testing.assert_allclose(y, local(bundles["alpha"][1], x), atol=1e-5)
        client.close()
    # a token without token_all guards only what changes the models: nothing over gRPC
    with mn.tfaas.serve_in_background(tmp_path, grpc_port=0, token=TOKEN) as handle:
        client = triton.InferenceServerClient(handle.grpc_target)
        assert client.infer("alpha", [triton_input(x)]).as_numpy("output_0").shape == (2, 1)
        client.close()


def test_a_grpc_port_in_use_fails_the_start(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="did not start"):
            mn.tfaas.serve_in_background(tmp_path, grpc_port=port, timeout=60)


# --- TF Serving ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apis() -> SimpleNamespace:
    """tensorflow-serving-api's modules (``make venv`` installs it with --no-deps)."""
    names = ("get_model_metadata_pb2", "predict_pb2", "prediction_service_pb2_grpc")
    return SimpleNamespace(
        **{name: pytest.importorskip(f"tensorflow_serving.apis.{name}") for name in names}
    )


@pytest.fixture(scope="module")
def tf_serving(server, apis):
    channel = grpc.insecure_channel(server.grpc_target)
    yield apis.prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def predict_request(apis, name: str, inputs: dict, signature: str = ""):
    request = apis.predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def tf_refused(call, code: grpc.StatusCode, *words: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value
    for word in words:
        assert word in info.value.details(), info.value.details()


def test_tf_serving_predict_matches_json(server, tf_serving, apis, bundles):
    x = rows(4, seed=3)
    response = tf_serving.Predict(predict_request(apis, "alpha", {"inputs": x}))
    assert (response.model_spec.name, response.model_spec.version.value) == ("alpha", 1)
    assert response.model_spec.signature_name == "serving_default"
    y = tf.make_ndarray(response.outputs["output_0"])
    np.testing.assert_allclose(y, json_answer(server, "alpha", x), atol=1e-5)
    # upstream TFaaS's signature, and the mask signature, by signature_name
    upstream = tf_serving.Predict(
        predict_request(apis, "alpha", {"default_inputs_input": x}, "serving")
    )
    np.testing.assert_allclose(tf.make_ndarray(upstream.outputs["output_0"]), y, atol=1e-5)
    mask = np.ones_like(x)
    mask[:, :2] = 0
    masked = tf_serving.Predict(
        predict_request(apis, "masked", {"inputs": x, "mask": mask}, "serving_with_mask")
    )
    np.testing.assert_allclose(
        tf.make_ndarray(masked.outputs["output_0"]), local(bundles["masked"][1], x, mask), atol=1e-5
    )


def test_tf_serving_errors(tf_serving, apis):
    x = rows(2)
    code = grpc.StatusCode
    tf_refused(
        lambda: tf_serving.Predict(predict_request(apis, "", {"inputs": x})),
        code.INVALID_ARGUMENT,
        "model_spec.name is empty",
    )
    tf_refused(
        lambda: tf_serving.Predict(predict_request(apis, "nope", {"inputs": x})), code.NOT_FOUND
    )
    versioned = predict_request(apis, "alpha", {"inputs": x})
    versioned.model_spec.version.value = 2
    tf_refused(lambda: tf_serving.Predict(versioned), code.NOT_FOUND, "no version '2'")
    labelled = predict_request(apis, "alpha", {"inputs": x})
    labelled.model_spec.version_label = "stable"
    tf_refused(lambda: tf_serving.Predict(labelled), code.INVALID_ARGUMENT, "Unrecognized servable")
    tf_refused(
        lambda: tf_serving.Predict(predict_request(apis, "alpha", {"inputs": x}, "serve_me")),
        code.INVALID_ARGUMENT,
        "no signature 'serve_me'",
        "serving_default",
    )
    tf_refused(
        lambda: tf_serving.Predict(predict_request(apis, "alpha", {"x": x})),
        code.INVALID_ARGUMENT,
        "missing ['inputs']",
    )
    tf_refused(
        lambda: tf_serving.Predict(predict_request(apis, "alpha", {"inputs": x[:, :3]})),
        code.INVALID_ARGUMENT,
        "takes 6 values per row",
    )
    tf_refused(
        lambda: tf_serving.Predict(
            predict_request(apis, "alpha", {"inputs": np.array([b"a", b"b"])})
        ),
        code.INVALID_ARGUMENT,
        "tensor of numbers",
    )


def test_tf_serving_model_metadata(tf_serving, apis):
    metadata = apis.get_model_metadata_pb2
    request = metadata.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "alpha"
    response = tf_serving.GetModelMetadata(request)
    signatures = metadata.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    default = signatures.signature_def["serving_default"]
    assert list(default.inputs) == ["inputs"]
    assert [d.size for d in default.inputs["inputs"].tensor_shape.dim] == [-1, N]
    assert "serving" in signatures.signature_def
    request.ClearField("metadata_field")
    tf_refused(lambda: tf_serving.GetModelMetadata(request), grpc.StatusCode.INVALID_ARGUMENT)


# --- KServe, in its own process --------------------------------------------------------------

KSERVE_SCRIPT = """
import asyncio, json, sys
import grpc
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest

async def main(target, x):
    out = {}
    async with InferenceGRPCClient(target, retries=0) as client:
        out["live"] = await client.is_server_live()
        out["ready"] = await client.is_server_ready()
        out["model_ready"] = await client.is_model_ready("alpha")
        raw = InferInput("inputs", list(x.shape), "FP32")
        raw.set_data_from_numpy(x)
        typed = InferInput("inputs", list(x.shape), "FP32", data=x.ravel().tolist())
        for key, tensor in (("raw", raw), ("typed", typed)):
            response = await client.infer(InferRequest(model_name="alpha", infer_inputs=[tensor]))
            out[key] = response.outputs[0].as_numpy().tolist()
        bad = InferInput("x", list(x.shape), "FP32")
        bad.set_data_from_numpy(x)
        for key, request in (
            ("unknown model", InferRequest(model_name="nope", infer_inputs=[raw])),
            ("bad name", InferRequest(model_name="alpha", infer_inputs=[bad])),
        ):
            try:
                await client.infer(request)
            except grpc.RpcError as err:
                out[key] = [type(err).__name__, err.code().name, err.details()]
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], np.asarray(json.loads(sys.argv[2]), dtype=np.float32)))
"""


def test_kserve_grpc_client(server):
    if importlib.util.find_spec("kserve") is None:  # not imported here: see the module doc
        pytest.skip("kserve is not installed (the test extra has it)")
    x = rows(3, seed=6)
    done = subprocess.run(
        [sys.executable, "-c", KSERVE_SCRIPT, server.grpc_target, json.dumps(x.tolist())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert [out["live"], out["ready"], out["model_ready"]] == [True, True, True]
    expected = json_answer(server, "alpha", x)
    np.testing.assert_allclose(out["raw"], expected, atol=1e-5)
    np.testing.assert_allclose(out["typed"], expected, atol=1e-5)
    assert out["unknown model"][:2] == ["AioRpcError", "NOT_FOUND"]
    assert "unknown model 'nope'" in out["unknown model"][2]
    assert out["bad name"][:2] == ["AioRpcError", "INVALID_ARGUMENT"]
    assert "no input 'x'" in out["bad name"][2]


# --- the command line, two workers on one gRPC port ------------------------------------------


def listeners(port: int) -> set[int]:
    """The processes listening on the TCP ``port``."""
    return {
        c.pid
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid
    }


@pytest.mark.slow
def test_serve_cli_workers_share_the_grpc_port(tmp_path, bundles):
    port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "mlaas4hep_nb.cli", "serve", "--port", str(port)]
    command += ["--grpc-port", str(grpc_port), "--workers", "2", "--model-dir", str(tmp_path)]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/v2/health/ready", process, what="mlaas4hep-nb serve")
        deadline = time.monotonic() + 120
        while len(listeners(grpc_port)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(listeners(grpc_port)) == 2  # SO_REUSEPORT: one listening socket per worker
        folder, model = bundles["alpha"]
        mn.TFaaSClient(url).upload(folder, name="shared")
        time.sleep(2.5)  # every worker scans the model dir each second
        x = rows(2)
        for _ in range(8):  # new connections: the kernel spreads them over both workers
            client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            y = client.infer("shared", [triton_input(x)]).as_numpy("output_0")
            np.testing.assert_allclose(y, local(model, x), atol=1e-5)
            client.close()
    finally:
        process.terminate()
        process.wait(30)


# --- the shipped protobuf modules ------------------------------------------------------------


def test_shipped_proto_modules_match_their_proto_files():
    pytest.importorskip("grpc_tools")
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "gen_protos.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_our_messages_live_beside_the_clients_own():
    from mlaas4hep_nb.tfaas.server import grpc_tfserving, grpc_v2
    from mlaas4hep_nb.tfaas.server.protos import grpc_service_pb2, predict_pb2

    assert grpc_service_pb2.ModelInferRequest.DESCRIPTOR.full_name == (
        "mlaas4hep_nb.inference.ModelInferRequest"
    )
    assert (
        triton.service_pb2.ModelInferRequest.DESCRIPTOR.full_name == "inference.ModelInferRequest"
    )
    assert predict_pb2.PredictRequest.DESCRIPTOR.full_name.startswith("mlaas4hep_nb.")
    # the wire names stay the real services'
    services = triton.service_pb2.DESCRIPTOR.services_by_name
    assert services["GRPCInferenceService"].full_name == grpc_v2.SERVICE
    assert grpc_tfserving.SERVICE == "tensorflow.serving.PredictionService"
