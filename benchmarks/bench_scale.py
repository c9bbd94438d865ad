"""Scale-out: events/s against Dask workers (1, 2) on local and XRootD files; kernel memory;
remote files under latency.

Run: .venv/bin/python benchmarks/bench_scale.py [--events 50000] [--files 8]
     .venv/bin/python benchmarks/bench_scale.py --only latency [--latency-events 100000]

Writes ``--files`` signal and background files (the synthetic ttH set), serves
them with a real XRootD server (Debian xrootd-server) when one is installed,
and in one run prints events/s of ``DataStream.chunks()`` with local threads
and with a Dask LocalCluster of 1 and 2 worker processes, for local and
root:// files. Then the kernel's peak RSS (a fresh process streaming through
2 Dask workers) for 1x and 8x the data; target: growth < 30%.

The latency case reads one signal and one background file of
``--latency-events`` events each from the XRootD server through
``support.DelayProxy``, which delays every byte by 0 or 10 ms each way (``tc
netem`` is not available here), with 2 and 4 reader threads. Each setting
runs in a fresh process (fsspec-xrootd keeps open files and the server's
vector-read limits per process). It prints, for the stream's construction
(spec given), ``compute_specs`` and two passes: the XRootD requests the
proxy saw (parsed from the request headers: ``read``, ``readv`` (data),
``stat``, ``open``, ``query``, ...), seconds, events/s, and the time from
``chunks()`` to the first chunk. For the figures of another version of the
package, put it first on ``PYTHONPATH``, e.g. ``git archive main
mlaas4hep_nb | tar -x -C /tmp/before`` and ``PYTHONPATH=/tmp/before``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlaas4hep_nb as mn

# the XRootD server is started as the tests start it: tests/support.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import DelayProxy, start_xrootd, stop


def rate(sources, spec, client=None, repeat: int = 2) -> float:
    stream = mn.DataStream(sources, specs=spec, client=client, progress=False)
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        n = sum(len(y) for _, _, y in stream.chunks())
        best = max(best, n / (time.perf_counter() - start))
    stream.close()
    return best


RSS_CODE = """
import resource, sys, distributed, mlaas4hep_nb as mn
files = {files!r}
if __name__ == "__main__":
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \\
            distributed.Client(cluster) as client:
        stream = mn.DataStream({{1: files[::2], 0: files[1::2]}}, specs={spec!r},
                               client=client, progress=False)
        n = sum(len(y) for _, _, y in stream.chunks())
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, n)
"""


def kernel_rss(files: list[str], spec_path: str) -> tuple[float, int]:
    code = RSS_CODE.format(files=files, spec=spec_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss, n = out.stdout.split()[-2:]
    return float(rss), int(n)


LATENCY_CODE = """
import json, sys, time
import mlaas4hep_nb as mn

sources, spec_path, workers = json.loads(sys.argv[1])
sources = {int(k): v for k, v in sources.items()}
figures = {}


def mark(name):
    print("MARK", name, flush=True)
    sys.stdin.readline()  # the proxy's counts are taken before this process goes on


def timed(name, fn):
    mark(name + ":start")
    start = time.perf_counter()
    value = fn()
    figures[name] = {"s": time.perf_counter() - start}
    mark(name + ":end")
    return value


def one_pass(stream):
    start = time.perf_counter()
    chunks = stream.chunks()
    n = len(next(chunks)[2])
    first = time.perf_counter() - start
    n += sum(len(y) for _, _, y in chunks)
    return n, first


stream = timed("construct", lambda: mn.DataStream(
    sources, specs=spec_path, max_workers=workers, progress=False))
for p in (1, 2):
    n, first = timed(f"pass{p}", lambda: one_pass(stream))
    figures[f"pass{p}"].update(events=n, first_chunk_ms=round(1000 * first, 1))
stream.close()
timed("compute_specs", lambda: mn.compute_specs(sources, cache=False, progress=False))
print("RESULT", json.dumps(figures), flush=True)
"""


def latency_case(
    url: str, port: int, names: dict[int, list[str]], spec_path: str, delay: float, workers: int
) -> dict:
    """One setting in a fresh process: requests, seconds, events/s of each step.

    The process runs outside the checkout, so that ``python -c`` imports the
    package from ``PYTHONPATH`` or the environment, not from the current folder.
    """
    proxy = DelayProxy(port, delay)
    base = url.replace(f":{port}/", f":{proxy.port}/")
    sources = {k: [f"{base}/{name}" for name in v] for k, v in names.items()}
    arguments = json.dumps([sources, spec_path, workers])
    child = subprocess.Popen(
        [sys.executable, "-c", LATENCY_CODE, arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(spec_path).parent,  # not the checkout: the package comes from sys.path
    )
    seen: dict[str, dict[str, int]] = {}
    result: dict = {}
    try:
        for line in child.stdout:
            if line.startswith("MARK "):
                seen[line.split()[1]] = proxy.counts()
                child.stdin.write("\n")
                child.stdin.flush()
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
    finally:
        child.wait(600)
        proxy.stop()
    if child.returncode:
        raise RuntimeError(f"latency case failed with {child.returncode}")
    for step, figures in result.items():
        before, after = seen[f"{step}:start"], seen[f"{step}:end"]
        requests = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        requests = {k: v for k, v in sorted(requests.items()) if v}
        figures["requests"] = sum(v for k, v in requests.items() if k != "connections")
        figures["data_requests"] = requests.get("read", 0) + requests.get("readv", 0)
        figures["by_kind"] = requests
        figures["s"] = round(figures["s"], 3)
        if "events" in figures:
            figures["events_per_s"] = round(figures["events"] / figures["s"])
    return result


def latency(events: int, tmp: Path) -> dict:
    """The latency case: 0 and 10 ms each way, 2 and 4 reader threads."""
    folder = tmp / "latency"
    folder.mkdir(mode=0o755)
    files = mn.datasets.make_tth(folder, events, events, n_files=1)
    for path in folder.glob("*.root"):
        path.chmod(0o644)
    spec_path = str(mn.compute_specs(files, cache=False, progress=False).save(tmp / "lat.json"))
    started = start_xrootd(folder)
    if started is None:
        return {"latency": "skipped: xrootd is not installed"}
    server, url = started
    port = int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    names = {k: [Path(p).name for p in v] for k, v in files.items()}
    figures = {"latency_events": 2 * events, "latency_files": 2}
    try:
        for delay in (0.0, 0.010):
            for workers in (2, 4):
                key = f"latency_{round(delay * 1000)}ms_{workers}_workers"
                figures[key] = latency_case(url, port, names, spec_path, delay, workers)
    finally:
        stop(server)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per class")
    parser.add_argument("--files", type=int, default=8, help="files per class")
    parser.add_argument(
        "--latency-events", type=int, default=100_000, help="events per class, latency case"
    )
    parser.add_argument("--only", choices=["latency"], help="run one case only")
    args = parser.parse_args()
    import distributed

    tmp = Path(tempfile.mkdtemp(prefix="mlaas4hep-bench-scale-", dir="/tmp"))
    tmp.chmod(0o755)
    if args.only == "latency":
        try:
            print(json.dumps(latency(args.latency_events, tmp), indent=1))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print("reproduce: .venv/bin/python benchmarks/bench_scale.py --only latency")
        return
    try:
        files = mn.datasets.make_tth(tmp, args.events, args.events, n_files=args.files)
        for path in tmp.glob("*.root"):
            path.chmod(0o644)
        spec = mn.compute_specs(files, cache=False, progress=False)
        server, url = start_xrootd(tmp) or (None, None)
        kinds = {"local": files}
        if url:
            kinds["xrootd"] = {k: [f"{url}/{Path(p).name}" for p in v] for k, v in files.items()}
        figures: dict = {"events": 2 * args.events, "files": 2 * args.files}
        for kind, sources in kinds.items():
            figures[f"{kind}_threads_events_per_s"] = round(rate(sources, spec))
            for workers in (1, 2):
                with (
                    distributed.LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        silence_logs=40,
                    ) as cluster,
                    distributed.Client(cluster) as client,
                ):
                    figures[f"{kind}_dask_{workers}_workers_events_per_s"] = round(
                        rate(sources, spec, client)
                    )
        if server is not None:
            stop(server)
        spec_path = str(spec.save(tmp / "spec.json"))
        flat = [p for pair in zip(files[1], files[0], strict=True) for p in pair]
        eight = []
        for i in range(8):
            for path in flat:
                link = tmp / f"x{i}_{Path(path).name}"
                os.link(path, link)
                eight.append(str(link))
        rss_1, n_1 = kernel_rss(flat, spec_path)
        rss_8, n_8 = kernel_rss(eight, spec_path)
        figures.update(
            kernel_peak_rss_mib_1x=round(rss_1, 1),
            kernel_peak_rss_mib_8x=round(rss_8, 1),
            events_1x=n_1,
            events_8x=n_8,
            rss_growth_8x=round(rss_8 / rss_1 - 1, 3),
        )
        figures.update(latency(args.latency_events, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(figures, indent=1))
    print("target: rss_growth_8x < 0.3 (2 cores here: workers share them with the kernel)")
    print("reproduce: .venv/bin/python benchmarks/bench_scale.py")


if __name__ == "__main__":
    main()
