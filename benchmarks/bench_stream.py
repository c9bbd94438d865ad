"""Streaming speed and memory: uproot.iterate vs DataStream.chunks vs compute_specs.

Run: .venv/bin/python benchmarks/bench_stream.py [--events 100000] [--repeat 3]
     .venv/bin/python benchmarks/bench_stream.py --wide [--events 100000] [--clusters 10000 ...]

Writes 2 NanoAOD-like files (8 flat float branches, nJet, nMuon, 5 jagged jet
and 3 jagged muon float branches; up to 12 jets and 4 muons: 82 features),
then in one run prints events/s of a raw ``uproot.iterate`` (all branches,
step 10,000), of ``DataStream.chunks()`` and of ``compute_specs``, and their
ratios. Peak RSS is measured in fresh processes streaming 1x and 8x the events:
one pass without the epoch cache, and two passes with ``cache="disk"`` (the
second from the memory-mapped cache), whose growth must stay under 0.3 too.

``--wide`` writes a wide file instead (200 jagged float branches of about 5
values, each with its counter, and 100 flat float branches: 1,900 features at
max_len=8, 460 MB for 100k events), once per cluster size of ``--clusters``
(events per cluster: as many as the chunks, 2.5 times, and the whole file by
default), and runs each case in a fresh process: a raw ``uproot.iterate``
over the same branches (step 10,000), one pass of DataStream (chunk_size
10,000, cache=False) with the file as one label and as both labels,
``compute_specs``, and two passes with ``cache="disk"`` and with ``"auto"``
(events/s over both). Each prints its events/s and its peak anonymous memory
(RssAnon + RssShmem of /proc/self/status, sampled every millisecond by a
thread, less their value after the imports: the file's memory-mapped pages
do not count); ratios are to the raw read. Target: peak memory at most 1.5x
the raw read's. For the figures of another version of the package, put it
first on PYTHONPATH (``git archive main mlaas4hep_nb | tar -x -C /tmp/before``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

FLAT = [f"flat_{i}" for i in range(8)]
JET = ["pt", "eta", "phi", "mass", "btag"]
MUON = ["pt", "eta", "phi"]


def write_file(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    block = 10_000
    with uproot.recreate(path) as file:
        tree = None
        for start in range(0, n, block):
            m = min(block, n - start)
            n_jet = rng.integers(0, 13, m)
            n_mu = rng.integers(0, 5, m)
            data = {name: rng.normal(size=m).astype(np.float32) for name in FLAT}
            data["Jet"] = ak.zip(
                {
                    k: ak.unflatten(rng.normal(size=n_jet.sum()).astype(np.float32), n_jet)
                    for k in JET
                }
            )
            data["Muon"] = ak.zip(
                {
                    k: ak.unflatten(rng.normal(size=n_mu.sum()).astype(np.float32), n_mu)
                    for k in MUON
                }
            )
            if tree is None:
                tree = file.mktree("Events", {k: ak.Array(v).type.content for k, v in data.items()})
            tree.extend(data)


def rate(fn) -> float:
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


def best_of(repeat: int, fn) -> float:
    return max(rate(fn) for _ in range(repeat))


def copies_of(files: list[str], copies: int, folder: Path) -> list[str]:
    """``copies`` x the files under distinct names (hard links: no extra disk)."""
    out = []
    for i in range(copies):
        for path in files:
            link = folder / f"copy{i}_{Path(path).name}"
            if not link.exists():
                os.link(path, link)
            out.append(str(link))
    return out


def peak_rss(
    files: list[str], spec_path: str, cache: str | bool = False, passes: int = 1
) -> tuple[float, int]:
    """Peak RSS (MiB) of a fresh process streaming the files ``passes`` times; events per pass."""
    code = f"""
import resource, mlaas4hep_nb as mn
files = {files!r}
stream = mn.DataStream({{1: files[::2], 0: files[1::2]}}, specs={spec_path!r}, progress=False,
                       cache={cache!r})
for _ in range({passes}):
    n = sum(len(y) for _, _, y in stream.chunks())
assert {passes} == 1 or stream.report["cache"]["reads"] == 0, stream.report["cache"]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, n)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss, n = out.stdout.split()[-2:]
    return float(rss), int(n)


WIDE_JAGGED, WIDE_FLAT, WIDE_MAX_LEN, WIDE_STEP = 200, 100, 8, 10_000
WIDE_CASES = (
    "raw",
    "stream_1_label",
    "stream_2_labels",
    "compute_specs",
    "disk_cache",
    "auto_cache",
)


def write_wide(path: Path, n: int, cluster: int, seed: int = 0) -> None:
    """The wide file: each ``tree.extend`` of ``cluster`` events writes one cluster."""
    rng = np.random.default_rng(seed)
    with uproot.recreate(path) as file:
        tree = None
        for start in range(0, n, cluster):
            m = min(cluster, n - start)
            data: dict[str, object] = {}
            for i in range(WIDE_JAGGED):
                counts = rng.poisson(5, m)
                values = rng.normal(size=counts.sum()).astype(np.float32)
                data[f"J{i}_v"] = ak.unflatten(values, counts)
            for i in range(WIDE_FLAT):
                data[f"F{i}"] = rng.normal(size=m).astype(np.float32)
            if tree is None:
                types = {
                    k: v.type.content if isinstance(v, ak.Array) else v.dtype
                    for k, v in data.items()
                }
                tree = file.mktree("Events", types)
            tree.extend(data)


def _anon_bytes() -> int:
    """Resident memory not backed by a file: RssAnon + RssShmem (shared anonymous maps)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return sum(int(fields[name].split()[0]) * 1024 for name in ("RssAnon", "RssShmem"))


class _PeakMemory:
    """The most anonymous memory (`_anon_bytes`) seen by a thread sampling it every ms."""

    def __init__(self) -> None:
        self.peak = _anon_bytes()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.001):
            self.peak = max(self.peak, _anon_bytes())

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return max(self.peak, _anon_bytes())


def wide_probe(case: str, path: str, spec_path: str) -> None:
    """Run one wide case in this (fresh) process; print its figures as JSON."""
    import mlaas4hep_nb as mn

    base = _anon_bytes()
    peak = _PeakMemory()
    start = time.perf_counter()
    extra: dict[str, object] = {}
    options = {"specs": spec_path, "chunk_size": WIDE_STEP, "progress": False}
    if case == "raw":
        names = [b.name for b in mn.FeatureSpec.load(spec_path).branches]
        n = sum(len(a) for a in uproot.iterate(path + ":Events", names, step_size=WIDE_STEP))
    elif case in ("stream_1_label", "stream_2_labels"):
        sources = {0: path} if case == "stream_1_label" else {0: path, 1: path}
        stream = mn.DataStream(sources, cache=False, **options)
        n = sum(len(y) for _, _, y in stream.chunks())
    elif case == "compute_specs":
        mn.compute_specs(path, max_len=WIDE_MAX_LEN, cache=False, progress=False)
        n = uproot.open(path + ":Events").num_entries
    else:  # two passes, the second from the cache
        stream = mn.DataStream({0: path}, cache=case.split("_")[0], **options)
        n = sum(len(y) for _ in range(2) for _, _, y in stream.chunks())
        info = stream.report["cache"]
        extra = {k: info[k] for k in ("memory_bytes", "disk_bytes", "limit", "hits")}
    seconds = time.perf_counter() - start
    figures = {"events_per_s": round(n / seconds), "peak_anon_mib": (peak.stop() - base) / 2**20}
    print(json.dumps({**figures, "events": n, **extra}))


def wide(args: argparse.Namespace) -> None:
    import mlaas4hep_nb as mn

    results = {}
    for cluster in args.clusters:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "wide.root")
            write_wide(Path(path), args.events, cluster)
            spec = mn.compute_specs(path, max_len=WIDE_MAX_LEN, cache=False, progress=False)
            spec_path = str(spec.save(Path(tmp) / "spec.json"))
            figures: dict[str, dict[str, float]] = {}
            for case in WIDE_CASES:
                command = [sys.executable, __file__, "--probe", case, path, spec_path]
                out = subprocess.run(command, capture_output=True, text=True, check=True)
                figures[case] = json.loads(out.stdout.splitlines()[-1])
        raw = figures["raw"]
        for case in figures.values():
            case["peak_anon_mib"] = round(case["peak_anon_mib"], 1)
            case["memory_over_raw"] = round(case["peak_anon_mib"] / raw["peak_anon_mib"], 2)
            case["speed_over_raw"] = round(case["events_per_s"] / raw["events_per_s"], 2)
        results[f"cluster_{cluster}"] = figures
    print(json.dumps({"features": spec.n_features, "events": args.events, **results}, indent=1))
    print("target: memory_over_raw <= 1.5 (stream_1_label, stream_2_labels, compute_specs)")
    clusters = " ".join(str(c) for c in args.clusters)
    print(
        "reproduce: .venv/bin/python benchmarks/bench_stream.py --wide "
        f"--events {args.events} --clusters {clusters}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per file")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--wide", action="store_true", help="the wide-file memory case")
    parser.add_argument(
        "--clusters",
        type=int,
        nargs="+",
        default=[10_000, 25_000, 100_000],
        help="wide: events per cluster, one file each",
    )
    parser.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        wide_probe(*args.probe)
        return
    if args.wide:
        wide(args)
        return

    import mlaas4hep_nb as mn

    with tempfile.TemporaryDirectory() as tmp:
        files = [str(Path(tmp) / f"nano_{i}.root") for i in range(2)]
        for i, path in enumerate(files):
            write_file(Path(path), args.events, seed=i)
        total = 2 * args.events
        sources = {1: files[:1], 0: files[1:]}
        spec = mn.compute_specs(files, cache=False, progress=False)
        stream = mn.DataStream(sources, specs=spec, progress=False, cache=False)
        assert stream.n_features == 82, stream.n_features

        def raw() -> int:
            n = 0
            for arrays in uproot.iterate(
                [f + ":Events" for f in files], step_size=10_000, library="ak"
            ):
                n += len(arrays)
            return n

        def streamed() -> int:
            return sum(len(y) for _, _, y in stream.chunks())

        def specs() -> int:
            mn.compute_specs(files, cache=False, progress=False)
            return total

        raw_rate = best_of(args.repeat, raw)
        stream_rate = best_of(args.repeat, streamed)
        spec_rate = best_of(args.repeat, specs)
        spec_path = str(spec.save(Path(tmp) / "spec.json"))
        rss_1, n_1 = peak_rss(copies_of(files, 1, Path(tmp)), spec_path)
        rss_8, n_8 = peak_rss(copies_of(files, 8, Path(tmp)), spec_path)
        assert n_8 == 8 * n_1 == 8 * total, (n_1, n_8)
        disk_1, _ = peak_rss(copies_of(files, 1, Path(tmp)), spec_path, "disk", passes=2)
        disk_8, n_disk = peak_rss(copies_of(files, 8, Path(tmp)), spec_path, "disk", passes=2)
        assert n_disk == n_8, (n_disk, n_8)
    figures = {
        "events": total,
        "uproot_iterate_events_per_s": round(raw_rate),
        "datastream_chunks_events_per_s": round(stream_rate),
        "stream_over_raw": round(stream_rate / raw_rate, 3),
        "compute_specs_events_per_s": round(spec_rate),
        "specs_over_raw": round(spec_rate / raw_rate, 3),
        "events_rss_1x": n_1,
        "events_rss_8x": n_8,
        "peak_rss_mib_1x": round(rss_1, 1),
        "peak_rss_mib_8x": round(rss_8, 1),
        "rss_growth_8x": round(rss_8 / rss_1 - 1, 3),
        "peak_rss_mib_disk_cache_1x": round(disk_1, 1),
        "peak_rss_mib_disk_cache_8x": round(disk_8, 1),
        "rss_growth_disk_cache_8x": round(disk_8 / disk_1 - 1, 3),
    }
    print(json.dumps(figures, indent=1))
    print(
        "targets: stream_over_raw >= 0.8, specs_over_raw >= 0.8, rss_growth_8x < 0.3, "
        "rss_growth_disk_cache_8x < 0.3"
    )
    print("reproduce: .venv/bin/python benchmarks/bench_stream.py")


if __name__ == "__main__":
    main()
