"""Scale-out: Dask workers, parallel local reads, remote robustness, caching remote files."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import start_xrootd
from support import restart_xrootd, stop, world_readable_copy

import mlaas4hep_nb as mn
from mlaas4hep_nb.data import paths
from mlaas4hep_nb.errors import SourceError

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")

BRANCHES = ["event", "MET_pt", "nJet", "Jet_pt", "Jet_btagDeepB"]


@pytest.fixture(scope="module")
def client():
    """A LocalCluster with 2 worker processes."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    )
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> dict[int, list[str]]:
    """16 files: 8 signal and 8 background, 400 events each."""
    return mn.datasets.make_tth(tmp_path_factory.mktemp("many"), 3200, 3200, n_files=8, seed=7)


@pytest.fixture
def xrootd_many(many):
    """A real XRootD server holding the 16 files (a fresh copy per test: tests delete files):
    the folder, the sources and a function that kills the server and starts it again."""
    folder = world_readable_copy([*many[1], *many[0]], "mlaas4hep-many-")
    process, url = start_xrootd(folder)
    servers = [process]
    sources = {k: [f"{url}/{Path(p).name}" for p in paths] for k, paths in many.items()}
    try:
        yield folder, sources, lambda: servers.append(restart_xrootd(servers[-1], folder))
    finally:
        stop(servers[-1])
        shutil.rmtree(folder, ignore_errors=True)


def keys_of(stream):
    """(label, event, MET_pt) of every event of one pass, in order."""
    rows = [np.column_stack([y, x[:, 0], x[:, 1]]) for x, _, y in stream.chunks()]
    return np.concatenate(rows)


def test_specs_on_dask_equal_the_local_pass(client, many):
    local = mn.compute_specs(many, max_len=5, cut="nJet >= 3", cache=False, progress=False)
    remote = mn.compute_specs(
        many, max_len=5, cut="nJet >= 3", cache=False, progress=False, client=client
    )
    assert remote.to_dict() == local.to_dict()


def test_stream_on_dask_gives_the_same_events_and_order(client, many):
    kw = {
        "branches": BRANCHES,
        "exclude": (),
        "normalize": None,
        "chunk_size": 700,
        "progress": False,
    }
    local = mn.DataStream(many, shuffle=False, **kw)
    on_dask = mn.DataStream(many, shuffle=False, client=client, **kw)
    for (a, am, ay), (b, bm, by) in zip(local.chunks(), on_dask.chunks(), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(am, bm)
        np.testing.assert_array_equal(ay, by)
    assert on_dask.dashboard_link.startswith("http")
    shuffled_local = keys_of(mn.DataStream(many, seed=3, **kw))
    shuffled_dask = keys_of(mn.DataStream(many, seed=3, client=client, **kw))
    np.testing.assert_array_equal(shuffled_local, shuffled_dask)
    assert on_dask.file_progress[many[1][0]] == (400, 400)


def test_stream_on_dask_caches_on_the_kernel_side(client, many, monkeypatch):
    kw = {"branches": BRANCHES, "exclude": (), "chunk_size": 700, "seed": 2, "progress": False}
    on_dask = mn.DataStream(many, client=client, cache="auto", **kw)
    submitted = []
    submit = client.submit

    def counting(*args, **kwargs):
        submitted.append(args[1])
        return submit(*args, **kwargs)

    monkeypatch.setattr(client, "submit", counting)
    local = mn.DataStream(many, cache=False, **kw)
    units = sum(len(units) for units in on_dask._units)
    for _ in range(3):  # each pass shuffled anew, as the local stream without a cache
        np.testing.assert_array_equal(keys_of(on_dask), keys_of(local))
        assert len(submitted) == units  # the first pass read each unit on a worker, once
    assert on_dask.report["cache"]["hits"] == units
    assert on_dask.report["cache"]["reads"] == 0


def test_local_threads_are_deterministic(many):
    kw = {
        "branches": BRANCHES,
        "exclude": (),
        "normalize": None,
        "chunk_size": 300,
        "progress": False,
        "seed": 1,
    }
    serial = keys_of(mn.DataStream(many, max_workers=0, **kw))
    threaded = keys_of(mn.DataStream(many, max_workers=4, **kw))
    np.testing.assert_array_equal(serial, threaded)
    assert len({tuple(row) for row in serial.tolist()}) == len(serial) == 6400


def test_a_killed_worker_loses_no_event(client, many):
    stream = mn.DataStream(
        many,
        branches=BRANCHES,
        exclude=(),
        normalize=None,
        chunk_size=200,
        client=client,
        progress=False,
    )
    chunks = stream.chunks()
    rows = [next(chunks)]
    victim = next(iter(client.run(os.getpid).values()))
    os.kill(victim, signal.SIGKILL)
    rows.extend(chunks)
    keys = np.concatenate([np.column_stack([y, x[:, 0], x[:, 1]]) for x, _, y in rows])
    assert len(keys) == 6400
    assert len({tuple(row) for row in keys.tolist()}) == 6400


def test_stream_over_xrootd_on_dask(client, xrootd_many, many):
    _, sources, _ = xrootd_many
    kw = {
        "branches": BRANCHES,
        "exclude": (),
        "normalize": None,
        "shuffle": False,
        "chunk_size": 900,
        "progress": False,
    }
    np.testing.assert_array_equal(
        keys_of(mn.DataStream(sources, client=client, **kw)), keys_of(mn.DataStream(many, **kw))
    )


@pytest.mark.parametrize("use_dask", [False, True])
def test_file_removed_mid_pass_is_named(request, xrootd_many, use_dask):
    folder, sources, restart = xrootd_many
    client = request.getfixturevalue("client") if use_dask else None
    stream = mn.DataStream(
        sources,
        branches=BRANCHES,
        exclude=(),
        chunk_size=400,
        shuffle=False,
        retries=1,
        client=client,
        progress=False,
    )
    chunks = stream.chunks()
    next(chunks)
    # emptied, removed, and the server restarted: the stream holds its files open, and
    # a Dask worker thread keeps the files it read before; both must fail on it
    os.truncate(folder / "ttbar_7.root", 0)
    (folder / "ttbar_7.root").unlink()
    restart()
    with pytest.raises(SourceError, match="ttbar_7.root"):
        list(chunks)


def test_skip_leaves_unreachable_files_out_and_lists_them(xrootd_many):
    folder, sources, restart = xrootd_many
    (folder / "tth_3.root").unlink()
    stream = mn.DataStream(
        sources, branches=BRANCHES, exclude=(), on_error="skip", retries=0, progress=False
    )
    assert list(stream.report["skipped"]) == [sources[1][3]]
    assert "tth_3.root" in stream.report["skipped"][sources[1][3]]
    assert sum(len(y) for _, _, y in stream.chunks()) == 6000
    stream = mn.DataStream(
        sources,
        branches=BRANCHES,
        exclude=(),
        on_error="skip",
        retries=0,
        chunk_size=400,
        shuffle=False,
        progress=False,
    )
    chunks = stream.chunks()
    seen = len(next(chunks)[2])
    (folder / "ttbar_6.root").unlink()
    restart()
    seen += sum(len(y) for _, _, y in chunks)
    assert sources[0][6] in stream.report["skipped"]
    assert seen < 6000


def test_cache_dir_keeps_remote_files(xrootd_many, tmp_path):
    folder, sources, _ = xrootd_many
    stream = mn.DataStream(
        sources,
        branches=BRANCHES,
        exclude=(),
        cache_dir=tmp_path / "cache",
        shuffle=False,
        progress=False,
    )
    first = keys_of(stream)
    assert any((tmp_path / "cache").iterdir())
    for path in folder.glob("*.root"):
        path.unlink()  # the server no longer has them: the second pass reads the copies
    np.testing.assert_array_equal(keys_of(stream), first)


def test_redirector_prefixes_logical_file_names(xrootd_many):
    folder, sources, _ = xrootd_many
    prefix, store = sources[1][0].split(str(folder))[0], str(folder)
    logical = store + "/tth_0.root"
    assert paths.expand("/store/x.root", "root://host.cern.ch") == [
        "root://host.cern.ch//store/x.root"
    ]
    assert mn.list_trees(prefix + logical)[0].entries == 400


def test_widgets_show_the_cluster_and_per_file_progress(client, many):
    from mlaas4hep_nb.widgets import Browser, TrainingPanel
    from mlaas4hep_nb.widgets.cluster import cluster_html, file_progress_html

    client.wait_for_workers(2, timeout=60)  # a test before may have killed one: it restarts
    browser = Browser(many, client=client)
    browser.wait()
    assert client.dashboard_link in browser.cluster_line.value
    assert "2 workers" in browser.cluster_line.value
    browser.pick("nJet", "MET_pt")
    browser.compute_specs(wait=True)
    local = mn.compute_specs(many, branches=["nJet", "MET_pt"], progress=False)
    assert browser.spec.features == local.features
    assert browser.spec.n_events == local.n_events
    assert browser.spec.branch("MET_pt").mean == pytest.approx(local.branch("MET_pt").mean)
    stream = browser.to_stream()
    assert stream.client is client
    panel = TrainingPanel(stream, epochs=1)
    panel.train(wait=True)
    assert client.dashboard_link in panel.cluster_line.value
    assert "read this pass" in panel.files_box.value
    assert "tth_0.root" in panel.files_box.value or "ttbar_0.root" in panel.files_box.value
    table = file_progress_html({"a/x.root": (5, 10), "a/y.root": (10, 10)})
    assert "1/2 read this pass" in table
    assert "x.root" in table
    assert "this kernel (2 reader threads)" in cluster_html(None)
