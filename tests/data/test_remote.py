"""root:// (a real XRootD server) and http:// (a real HTTP server with ranges) act like local."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import start_xrootd
from support import DelayProxy, free_port, stop, world_readable_copy

import mlaas4hep_nb as mn
from mlaas4hep_nb.errors import SourceError


def remote_sources(base: str, tth) -> dict[int, list[str]]:
    return {label: [f"{base}/{Path(p).name}" for p in paths] for label, paths in tth.items()}


def spec_content(spec):
    data = spec.to_dict()
    return {k: v for k, v in data.items() if k not in ("files", "fingerprint")}


def all_chunks(sources, **kw):
    stream = mn.DataStream(sources, shuffle=False, chunk_size=900, progress=False, **kw)
    parts = list(stream.chunks())
    return stream, [np.concatenate([p[i] for p in parts]) for i in range(3)]


@pytest.fixture(params=["xrootd", "http"])
def remote(request, tth):
    base = request.getfixturevalue("xrootd_url" if request.param == "xrootd" else "http_url")
    return remote_sources(base, tth)


def test_browse_specs_and_stream_equal_local(remote, tth):
    first = remote[1][0]
    assert mn.list_trees(first) == mn.list_trees(tth[1][0])
    assert mn.branches(first) == mn.branches(tth[1][0])
    local_hist = mn.preview(tth[1][0], "Events", "Jet_pt")
    np.testing.assert_array_equal(
        mn.preview(first, "Events", "Jet_pt").values(), local_hist.values()
    )
    remote_spec = mn.compute_specs(remote, max_len=6, cache=False, progress=False)
    local_spec = mn.compute_specs(tth, max_len=6, cache=False, progress=False)
    assert spec_content(remote_spec) == spec_content(local_spec)
    _, remote_arrays = all_chunks(remote, specs=local_spec)
    _, local_arrays = all_chunks(tth, specs=local_spec)
    for a, b in zip(remote_arrays, local_arrays, strict=True):
        np.testing.assert_array_equal(a, b)


def test_split_is_the_same_remote_and_local(remote, tth):
    spec = mn.compute_specs(tth, branches=["MET_pt"], cache=False, progress=False)
    remote_stream = mn.DataStream(remote, specs=spec, shuffle=False, progress=False)
    local_stream = mn.DataStream(tth, specs=spec, shuffle=False, progress=False)
    remote_y = np.concatenate([x[:, 0] for x, _, _ in remote_stream.chunks("validation")])
    local_y = np.concatenate([x[:, 0] for x, _, _ in local_stream.chunks("validation")])
    np.testing.assert_array_equal(remote_y, local_y)


def test_remote_glob(xrootd_url, tth):
    trees = mn.list_trees(f"{xrootd_url}/tth_*.root")
    assert trees == [mn.TreeInfo("Events", "TTree", 3000, 2)]


def test_missing_remote_file_is_named(remote):
    missing = remote[1][0].replace("tth_0", "nothing_here")
    with pytest.raises(SourceError, match="nothing_here"):
        mn.list_trees(missing)


@pytest.mark.parametrize("scheme", ["root", "http"])
def test_unreachable_host_fails_fast(scheme):
    port = free_port()  # nothing listens there
    url = f"{scheme}://127.0.0.1:{port}//data/file.root"
    start = time.monotonic()
    with pytest.raises(SourceError, match=f"127.0.0.1:{port}"):
        mn.list_trees(url)
    assert time.monotonic() - start < 60


def test_xrootd_works_after_tensorflow_was_imported(xrootd_url):
    # TensorFlow's BoringSSL symbols used to crash an XRootD client loaded after it
    code = (
        "import sys, tensorflow, mlaas4hep_nb as mn; "
        f"print(mn.list_trees({xrootd_url + '/tth_0.root'!r})[0].entries)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "1500"


# --- files opened once per stream, and shared by its threads --------------------------------


@pytest.fixture
def proxied(xrootd_url, tth):
    """The XRootD server behind a `DelayProxy` (no delay) that counts the requests sent."""
    port = int(xrootd_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    proxy = DelayProxy(port, 0.0)
    try:
        yield proxy, remote_sources(xrootd_url.replace(f":{port}/", f":{proxy.port}/"), tth)
    finally:
        proxy.stop()


def requests_during(proxy, action):
    """What ``action()`` returns, and the XRootD requests it sent by kind."""
    before = proxy.counts()
    result = action()
    after = proxy.counts()
    return result, {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def test_a_stream_opens_and_stats_each_remote_file_once(proxied, opens):
    proxy, sources = proxied
    paths = [path for group in sources.values() for path in group]
    # a proxy port never seen before: the spec is not in the cache, compute_specs reads
    stream, built = requests_during(
        proxy, lambda: mn.DataStream(sources, max_workers=1, cache=False, progress=False)
    )
    passes = [requests_during(proxy, lambda: list(stream.chunks()))[1] for _ in range(2)]
    assert opens == dict.fromkeys(paths, 1)  # scan, compute_specs, both passes
    assert built["stat"] == len(paths)  # the truncation check's, kept for the fingerprint
    assert built.get("query", 0) <= 1  # the vector-read limits, asked once
    assert set(passes[0]) == set(passes[1]) == {"readv"}  # data only: everything is open


def test_with_the_cache_later_passes_only_stat_each_remote_file(proxied, opens):
    proxy, sources = proxied
    paths = [path for group in sources.values() for path in group]
    stream = mn.DataStream(sources, max_workers=1, cache="memory", progress=False)
    passes = [requests_during(proxy, lambda: list(stream.chunks()))[1] for _ in range(2)]
    assert passes[0]["stat"] == passes[1]["stat"] == len(paths)  # is the cache still valid?
    assert passes[0]["readv"] > 0
    assert set(passes[1]) == {"stat"}
    assert opens == dict.fromkeys(paths, 1)


def test_threads_sharing_remote_files_read_what_local_reads_read(remote, tth):
    kw = {"chunk_size": 300, "shuffle": True, "seed": 5, "progress": False}
    local = mn.DataStream(tth, max_workers=0, **kw)
    shared = mn.DataStream(remote, max_workers=6, specs=local.spec, **kw)
    for _ in range(2):
        for a, b in zip(local.split_chunks(), shared.split_chunks(), strict=True):
            for x, y in zip([*a[0], *a[1]], [*b[0], *b[1]], strict=True):
                np.testing.assert_array_equal(x, y)


# --- a server killed and restarted mid-pass ------------------------------------------------


def test_a_server_killed_mid_pass_and_restarted_is_recovered_by_the_retry(tth, opens):
    folder = world_readable_copy([*tth[1], *tth[0]], "mlaas4hep-restarted-")
    process, url = start_xrootd(folder)
    servers = [process]
    try:
        # read on this thread, no read-ahead: the files after the first chunk are read
        # while the server is down
        kw = {"branches": ["MET_pt", "Jet_pt"], "chunk_size": 500, "shuffle": False}
        kw |= {"max_workers": 0}
        local = mn.DataStream(tth, progress=False, **kw)
        stream = mn.DataStream(remote_sources(url, tth), specs=local.spec, progress=False, **kw)
        chunks = stream.chunks()
        got = [next(chunks)]
        process.kill()  # every connection and open file is lost
        process.wait(10)
        process.log.close()
        # reads fail until it is back; the retries (after 0.5, 1 and 2 s) reopen the files
        back = threading.Timer(1.0, lambda: servers.append(start_xrootd(folder, process.port)[0]))
        back.start()
        got.extend(chunks)
        back.join()
        for i, expected in enumerate(zip(*local.chunks(), strict=True)):
            np.testing.assert_array_equal(
                np.concatenate([g[i] for g in got]), np.concatenate(expected)
            )
        assert max(count for path, count in opens.items() if path.startswith("root:")) >= 2
    finally:
        stop(servers[-1])
        shutil.rmtree(folder, ignore_errors=True)
