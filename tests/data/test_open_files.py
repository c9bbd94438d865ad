"""OpenFiles: files kept open for a stream's life and lent to one thread at a time."""

from __future__ import annotations

import collections
import threading

import numpy as np
import pytest

import mlaas4hep_nb as mn
from mlaas4hep_nb.data import rootio
from mlaas4hep_nb.data.handles import OpenFiles
from mlaas4hep_nb.errors import SchemaError, SourceError


def lend_from_threads(files: OpenFiles, path: str, threads: int = 6, times: int = 20):
    """Borrow ``path`` from several threads at once: the most holders of one handle at a
    time, the most handles lent at a time, and the values each read got."""
    holders: collections.Counter[int] = collections.Counter()
    most = {"per_handle": 0, "lent": 0}
    lock = threading.Lock()
    start = threading.Barrier(threads)
    values = []

    def work() -> None:
        start.wait()
        for _ in range(times):
            with files.tree(path, "Events") as tree:
                with lock:
                    holders[id(tree)] += 1
                    most["per_handle"] = max(most["per_handle"], holders[id(tree)])
                    most["lent"] = max(most["lent"], sum(holders.values()))
                values.append(rootio.read_columns(tree, ["MET_pt"], 100, 400)["MET_pt"])
                with lock:
                    holders[id(tree)] -= 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return most, values


@pytest.mark.parametrize("per_file", [1, 2])
def test_a_handle_is_lent_to_one_thread_at_a_time(tth, per_file):
    files = OpenFiles(per_file=per_file)
    path = tth[1][0]
    most, values = lend_from_threads(files, path)
    assert most["per_handle"] == 1
    assert most["lent"] <= per_file
    assert files.opened <= per_file
    expected = rootio.read_columns(rootio.open_tree(path, "Events"), ["MET_pt"], 100, 400)
    assert len(values) == 6 * 20
    for got in values:
        np.testing.assert_array_equal(got, expected["MET_pt"])


def test_least_recently_used_handles_are_closed_over_max_open(tth):
    files = OpenFiles(max_open=2)
    paths = [*tth[1], *tth[0]]
    trees = []
    for path in paths[:3]:
        with files.tree(path, "Events") as tree:
            trees.append(tree)
    assert [tree.file.closed for tree in trees] == [True, False, False]
    with files.tree(paths[1], "Events"):
        pass
    with files.tree(paths[0], "Events"):
        pass
    assert files.opened == 4  # the first file again, the second still open
    assert trees[2].file.closed


def test_a_failed_read_or_drop_opens_the_file_afresh(tth):
    files = OpenFiles()
    path = tth[1][0]
    with pytest.raises(SchemaError), files.tree(path, "Events"):
        raise SchemaError("a bad expression, found after reading")
    with pytest.raises(SourceError), files.tree(path, "Events"):
        raise SourceError("the read failed")
    assert files.opened == 1
    with files.tree(path, "Events") as tree:
        assert not tree.file.closed
    assert files.opened == 2  # after the failed read, not after the bad expression
    files.drop(path)
    assert tree.file.closed
    with files.tree(path, "Events") as lent:
        files.drop(path)  # while lent: closed when given back
        assert not lent.file.closed
    assert lent.file.closed
    files.close()
    assert files.opened == 3


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        OpenFiles(max_open=0)


@pytest.mark.parametrize("max_workers", [0, 1])
def test_a_stream_opens_each_file_once(tth, opens, max_workers):
    stream = mn.DataStream(tth, chunk_size=500, max_workers=max_workers, progress=False)
    for _ in range(2):
        assert sum(len(y) for _, _, y in stream.chunks()) == 6000
    assert stream.count("validation") > 0
    assert len(stream.head(10)[2]) == 10
    assert opens == {path: 1 for paths in tth.values() for path in paths}


def test_threads_open_a_busy_file_again_at_most_once_each_per_stream(tth, opens):
    stream = mn.DataStream(tth, chunk_size=300, max_workers=4, progress=False)
    for _ in range(3):
        list(stream.chunks())
    # the scan's and compute_specs' handles included: no more than one per reader thread
    assert set(opens) == {path for paths in tth.values() for path in paths}
    assert max(opens.values()) <= 4
    before = sum(opens.values())
    stream.close()
    list(stream.chunks())  # closed files open again
    assert sum(opens.values()) > before


@pytest.mark.parametrize("fmt", ["TTree", "RNTuple"])
def test_threads_sharing_files_read_what_one_thread_reads(tth, tth_rntuple, fmt):
    # six threads reading one freshly opened RNTuple object at once get errors and wrong
    # values from uproot: handles are lent to one thread at a time
    sources = tth if fmt == "TTree" else tth_rntuple
    kw = {"chunk_size": 250, "shuffle": True, "seed": 3, "progress": False}
    alone = mn.DataStream(sources, max_workers=0, **kw)
    shared = mn.DataStream(sources, max_workers=6, **kw)
    for _ in range(2):
        for a, b in zip(alone.split_chunks(), shared.split_chunks(), strict=True):
            for x, y in zip([*a[0], *a[1]], [*b[0], *b[1]], strict=True):
                np.testing.assert_array_equal(x, y)
