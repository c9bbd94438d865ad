"""root:// (a real XRootD server) and http:// (a real HTTP server with ranges) act like local."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import free_port

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
