"""Serving speed: the TFaaS server under load from wrk, next to a bare constant endpoint.

Upstream TFaaS published about 480 req/s on 16 cores (JSON, concurrency 200)
for a 42x128x128x128x64x64x1 network. This serves the same network with
``mlaas4hep-nb serve`` in a subprocess and loads it from ``wrk`` (another
process) on 127.0.0.1:

1. single-row JSON requests (upstream's format) at concurrency 100;
2. 1,000-row batch requests at concurrency 4 (rows per second);
2b. the same batches as Open Inference v2 requests with binary tensor data
   (Triton's extension, as ``tritonclient.http`` sends them), binary answers;
3. for context, endpoints that return a constant: bare Starlette under stock
   uvicorn settings, and a bare ASGI app under the server's own settings;
4. single-row KServe v2 gRPC ``ModelInfer`` requests (raw_input_contents, as
   tritonclient and CMSSW's SONIC send them) at concurrency 100 (10 HTTP/2
   connections of 10 streams), from ``h2load``: a load generator in C like
   wrk, so that the client's cost does not hide the server's on a small
   machine; the 1,000-row batches as ModelInfer requests at concurrency 4;
   and, for context, ``ServerLive`` calls, which do no work: grpcio's own
   cost per call.

Each load runs for ``--seconds`` (default 10) after a short warm-up. With
``--models N``, the model dir also holds N - 1 small models (8x16x1): the
script reports the server's start-up time (until every model is served) and
resident memory against a server with the benchmark network alone, and the
loads run on the benchmark network while the other models sit idle.

    python benchmarks/bench_serve.py [--seconds 10] [--skip-bare] [--models 100] [--skip-v2-binary]
        [--skip-grpc]

``wrk`` and ``h2load`` come from Debian (``apt-get install wrk nghttp2-client``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import requests

# free_port and wait_until_up are shared with the tests: tests/support.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import free_port, wait_until_up

UPSTREAM_REQ_S = 480
N_FEATURES = 42
LAYERS = (128, 128, 128, 64, 64)

BARE_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def constant(request):
    await request.body()
    return Response(b"[0.5]", media_type="application/json")

async def raw(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"[0.5]"})

if sys.argv[1] == "starlette":  # stock uvicorn settings
    app, http = Starlette(routes=[Route("/json", constant, methods=["POST"])]), "httptools"
else:  # the same uvicorn settings as mlaas4hep-nb serve
    from mlaas4hep_nb._compat.uvicorn import CoalescingHttpToolsProtocol
    app, http = raw, CoalescingHttpToolsProtocol
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), loop="uvloop", http=http,
            access_log=False, proxy_headers=False, server_header=False, date_header=False,
            log_level="warning")
"""

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
"""
LUA_HEADER = 'wrk.headers["{name}"] = "{value}"\n'


def make_bundle(folder: Path) -> Path:
    """The upstream benchmark's network (untrained weights: the speed is the same)."""
    import keras

    from mlaas4hep_nb.bundle import write_bundle

    inputs = keras.Input((N_FEATURES,), name="inputs")
    x = inputs
    for width in LAYERS:
        x = keras.layers.Dense(width, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    features = [f"f{i}" for i in range(N_FEATURES)]
    return write_bundle(model, folder / "bench", features=features)


def add_small_models(folder: Path, count: int) -> None:
    """``count`` copies of a small 8x16x1 bundle, as a shared service holds many models."""
    import json

    import keras

    from mlaas4hep_nb.bundle import write_bundle

    inputs = keras.Input((8,), name="inputs")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    first = write_bundle(model, folder / "small_000", features=[f"x{i}" for i in range(8)])
    for i in range(1, count):
        copy = folder / f"small_{i:03d}"
        shutil.copytree(first, copy)
        params = json.loads((copy / "params.json").read_text())
        (copy / "params.json").write_text(json.dumps({**params, "name": copy.name}))


def start_server(models: Path, grpc_port: int | None = None) -> tuple[subprocess.Popen, str, float]:
    """``mlaas4hep-nb serve`` on the model dir; its URL and the seconds until it served."""
    port = free_port()
    command = [sys.executable, "-m", "mlaas4hep_nb.cli", "serve", "--port", str(port),
               "--model-dir", str(models)]  # fmt: skip
    if grpc_port is not None:
        command += ["--grpc-port", str(grpc_port)]
    start = time.perf_counter()
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/status", server)
    expected = {p.name for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")}
    while set(requests.get(url + "/status", timeout=10).json()["models"]) != expected:
        time.sleep(0.05)
    return server, url, time.perf_counter() - start


def rss_mib(process: subprocess.Popen) -> float:
    import psutil

    return psutil.Process(process.pid).memory_info().rss / 2**20


def run_wrk(
    url: str, body: Path, connections: int, seconds: float, threads: int, headers=None
) -> dict:
    script = body.with_suffix(".lua")
    extra = "".join(LUA_HEADER.format(name=k, value=v) for k, v in (headers or {}).items())
    script.write_text(LUA.format(body=body) + extra)
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
        "--timeout", "5s", "-s", str(script), url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    figures = {"req_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()
        figures[f"p{pct}_ms"] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    figures["requests"] = total
    figures["errors"] = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(map(int, errors.groups())) if errors else 0
    )
    return figures


def load(
    url: str, body: Path, connections: int, seconds: float, threads: int, headers=None
) -> dict:
    run_wrk(url, body, connections, 1, threads, headers)  # warm-up: TF, batcher, connections
    return run_wrk(url, body, connections, seconds, threads, headers)


def bench_v2_binary(url: str, tmp: Path, x: np.ndarray, seconds: float, threads: int) -> dict:
    """The batch load as Open Inference v2 requests with binary tensor data, binary answers."""
    raw = x.astype("<f4").tobytes()
    tensor = {"name": "inputs", "datatype": "FP32", "shape": list(x.shape),
              "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    header = orjson.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}})
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(header))}  # fmt: skip
    body = tmp / "v2-binary.bin"
    body.write_bytes(header + raw)
    answer = requests.post(url + "/v2/models/bench/infer", data=body.read_bytes(),
                           headers=headers, timeout=30)  # fmt: skip
    answer.raise_for_status()
    size = int(answer.headers["Inference-Header-Content-Length"])
    by_json = requests.post(url + "/json", json={"values": x[:3].tolist(), "model": "bench"})
    y = np.frombuffer(answer.content[size:], dtype="<f4")
    np.testing.assert_allclose(y[:3], np.ravel(by_json.json()), atol=1e-5)
    return load(url + "/v2/models/bench/infer", body, 4, seconds, threads, headers)


def grpc_failures(target: str) -> int:
    """The server's count of failed requests for the model ``bench`` (ModelStatistics)."""
    import grpc

    from mlaas4hep_nb.tfaas.server.protos import grpc_service_pb2 as pb

    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelStatistics",
            request_serializer=pb.ModelStatisticsRequest.SerializeToString,
            response_deserializer=pb.ModelStatisticsResponse.FromString,
        )
        stats = call(pb.ModelStatisticsRequest(name="bench")).model_stats[0].inference_stats
    return stats.fail.count


def run_h2load(
    port: int, method: str, message: bytes, tmp: Path, seconds: float, streams: int = 10
) -> dict:
    """h2load calling ``method`` of Triton's service with ``message``.

    Concurrency 100 as 10 connections of 10 streams, or with ``streams=1``,
    4 connections of one stream (the batch loads' concurrency).

    h2load sees only HTTP statuses (a gRPC error is an HTTP 200 whose trailer
    says so): its errors are the requests it saw fail.
    """
    body = tmp / f"{method}.grpc"
    body.write_bytes(b"\0" + len(message).to_bytes(4, "big") + message)  # gRPC's framing
    log = tmp / "h2load.log"
    log.unlink(missing_ok=True)  # h2load appends
    url = f"http://127.0.0.1:{port}/inference.GRPCInferenceService/{method}"
    command = [
        "h2load", f"-c{10 if streams > 1 else 4}", f"-m{streams}", "-t1",
        f"-D{max(1, round(seconds))}", "--warm-up-time=1",
        "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"--log-file={log}", url,
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    # columns: start (us since the epoch), HTTP status, microseconds until the response ended
    times = np.loadtxt(log, usecols=2, ndmin=1) / 1e3
    return {
        "req_s": float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1)),
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "requests": int(done.group(1)),
        "errors": int(done.group(1)) - int(done.group(2)),
    }


def grpc_infer(port: int, x: np.ndarray, tmp: Path, seconds: float) -> dict:
    """ModelInfer requests of the rows ``x`` (raw contents) from h2load.

    One row: concurrency 100; a batch: 4. The errors add the server's failed
    requests (ModelStatistics; those h2load cuts at the end are cancels, not
    failures).
    """
    from mlaas4hep_nb.tfaas.server.protos import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name="bench", raw_input_contents=[x.tobytes()])
    request.inputs.add(name="inputs", datatype="FP32", shape=list(x.shape))
    message, streams = request.SerializeToString(), 10 if len(x) == 1 else 1
    before = grpc_failures(f"127.0.0.1:{port}")
    figures = run_h2load(port, "ModelInfer", message, tmp, seconds, streams)
    figures["errors"] += grpc_failures(f"127.0.0.1:{port}") - before
    return figures


def line(what: str, f: dict, rows: int = 1) -> str:
    rate = f"{f['req_s']:>9,.0f} req/s" + (
        f"  {f['req_s'] * rows:>11,.0f} rows/s" if rows > 1 else ""
    )
    return (
        f"{what:<34} {rate}  p50 {f['p50_ms']:6.2f} ms  p99 {f['p99_ms']:6.2f} ms  "
        f"errors {f['errors']} of {f['requests']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--skip-bare", action="store_true", help="skip the constant endpoints")
    parser.add_argument("--models", type=int, default=1, help="models in the model dir")
    parser.add_argument("--skip-v2-binary", action="store_true", help="skip the v2 binary batches")
    parser.add_argument("--skip-grpc", action="store_true", help="skip the gRPC load (h2load)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 1
    grpc_port = None if args.skip_grpc else free_port()
    if grpc_port is not None and shutil.which("h2load") is None:
        print("h2load not found: apt-get install nghttp2-client (or --skip-grpc)", file=sys.stderr)
        return 1
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    processes = []
    try:
        models = tmp / "models"
        models.mkdir()
        make_bundle(models)
        rng = np.random.default_rng(0)
        x = rng.random((1000, N_FEATURES), dtype=np.float32)
        keys = [f"f{i}" for i in range(N_FEATURES)]
        single, batch = tmp / "single.json", tmp / "batch.json"
        single.write_bytes(orjson.dumps({"keys": keys, "values": x[0], "model": "bench"},
                                        option=orjson.OPT_SERIALIZE_NUMPY))  # fmt: skip
        batch.write_bytes(orjson.dumps({"keys": keys, "values": x, "model": "bench"},
                                       option=orjson.OPT_SERIALIZE_NUMPY))  # fmt: skip

        if args.models > 1:
            server, url, alone = start_server(models)
            memory_alone = rss_mib(server)
            server.terminate()
            server.wait(30)
            add_small_models(models, args.models - 1)
        server, url, started = start_server(models, grpc_port)
        processes.append(server)
        check = requests.post(url + "/json", data=single.read_bytes(), timeout=30)
        check.raise_for_status()
        print(f"network {N_FEATURES}x{'x'.join(map(str, LAYERS))}x1, {os.cpu_count()} cores "
              f"shared by server and wrk; {args.seconds:g} s per load")  # fmt: skip
        if args.models > 1:
            memory = rss_mib(server)
            per_model = (memory - memory_alone) / (args.models - 1)
            print(
                f"{args.models} models: served {started:.1f} s after start (one model: "
                f"{alone:.1f} s); RSS {memory:,.0f} MiB (one model: {memory_alone:,.0f} MiB, "
                f"{per_model:.1f} MiB per small model)"
            )
        results = {}
        results["single"] = load(url + "/json", single, 100, args.seconds, args.threads)
        print(line("TFaaS /json, 1 row, c=100", results["single"]), flush=True)
        results["batch"] = load(url + "/json", batch, 4, args.seconds, args.threads)
        print(line("TFaaS /json, 1000 rows, c=4", results["batch"], 1000), flush=True)
        if not args.skip_v2_binary:
            results["v2_binary"] = bench_v2_binary(url, tmp, x, args.seconds, args.threads)
            print(line("v2 binary, 1000 rows, c=4", results["v2_binary"], 1000), flush=True)
        if grpc_port is not None:
            results["grpc"] = grpc_infer(grpc_port, x[:1], tmp, args.seconds)
            print(line("gRPC ModelInfer, 1 row, c=100", results["grpc"]), flush=True)
            results["grpc_batch"] = grpc_infer(grpc_port, x, tmp, args.seconds)
            print(line("gRPC ModelInfer, 1000 rows, c=4", results["grpc_batch"], 1000), flush=True)
            # for context: gRPC's own cost, a call that does no work
            results["grpc_live"] = run_h2load(grpc_port, "ServerLive", b"", tmp, args.seconds)
            print(line("gRPC ServerLive (no work), c=100", results["grpc_live"]), flush=True)
        batches = requests.get(url + "/status", timeout=10).json()["batches"]["bench"]
        server.terminate()
        server.wait(30)

        bare_rate = None
        if not args.skip_bare:
            for kind in ("starlette", "asgi"):
                port = free_port()
                bare = subprocess.Popen([sys.executable, "-c", BARE_APP, kind, str(port)])
                processes.append(bare)
                wait_until_up(f"http://127.0.0.1:{port}/", bare)
                figures = load(f"http://127.0.0.1:{port}/json", single, 100, args.seconds, 1)
                print(line(f"bare {kind} constant, c=100", figures), flush=True)
                bare_rate = figures["req_s"]
                bare.terminate()
                bare.wait(30)

        single_rate = results["single"]["req_s"]
        print(f"\nmicro-batching: {batches['rows']:,} rows in {batches['calls']:,} model calls "
              f"({batches['rows'] / max(batches['calls'], 1):.1f} rows per call)")  # fmt: skip
        print(f"single-row: {single_rate:,.0f} req/s = {single_rate / UPSTREAM_REQ_S:.0f}x "
              f"upstream's {UPSTREAM_REQ_S} req/s (target 15,000, p99 <= 25 ms)")  # fmt: skip
        if bare_rate:
            print(f"single-row: {single_rate / bare_rate:.0%} of the bare ASGI endpoint's rate")
        print(f"batches: {results['batch']['req_s'] * 1000:,.0f} rows/s (target 500,000)")
        if "v2_binary" in results:
            ratio = results["v2_binary"]["req_s"] / results["batch"]["req_s"]
            print(f"v2 binary batches: {results['v2_binary']['req_s'] * 1000:,.0f} rows/s = "
                  f"{ratio:.2f}x the JSON batches (target 1.5x)")  # fmt: skip
        if grpc_port is not None:
            grpc_rate, empty = results["grpc"]["req_s"], results["grpc_live"]["req_s"]
            print(f"gRPC single-row: {grpc_rate / single_rate:.2f}x the /json rate in this run "
                  f"(target >= 1, p99 <= 4 ms on an idle machine); "
                  f"{grpc_rate / empty:.0%} of the empty gRPC call's")  # fmt: skip
            ratio = results["grpc_batch"]["req_s"] / results["batch"]["req_s"]
            print(f"gRPC batches: {ratio:.2f}x the JSON batches' rows/s")
        print("load average (1 min) before and after: "
              f"{load_before:.2f}, {os.getloadavg()[0]:.2f}")  # fmt: skip
        print(f"reproduce: python benchmarks/bench_serve.py --seconds {args.seconds:g}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
