"""Streaming speed and memory: uproot.iterate vs DataStream.chunks vs compute_specs.

Run: .venv/bin/python benchmarks/bench_stream.py [--events 100000] [--repeat 3]

Writes 2 NanoAOD-like files (8 flat float branches, nJet, nMuon, 5 jagged jet
and 3 jagged muon float branches; up to 12 jets and 4 muons: 82 features),
then in one run prints events/s of a raw ``uproot.iterate`` (all branches,
step 10,000), of ``DataStream.chunks()`` and of ``compute_specs``, and their
ratios. Peak RSS is measured in fresh processes streaming 1x and 8x the events:
one pass without the epoch cache, and two passes with ``cache="disk"`` (the
second from the memory-mapped cache), whose growth must stay under 0.3 too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per file")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

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
