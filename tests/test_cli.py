"""The mlaas4hep-nb command: make-data, browse, specs, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import uproot

from mlaas4hep_nb.cli import main


def test_make_data_browse_and_specs(tmp_path, capsys):
    assert (
        main(
            [
                "make-data",
                str(tmp_path / "data"),
                "--signal",
                "200",
                "--background",
                "300",
                "--fmt",
                "RNTuple",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "label 1:" in out
    assert "label 0:" in out
    signal = str(tmp_path / "data" / "tth_0.root")

    assert main(["browse", signal]) == 0
    out = capsys.readouterr().out
    assert "Events  RNTuple  200" in out
    assert "Jet_pt" in out
    assert "jagged" in out

    spec_path = tmp_path / "spec.json"
    assert (
        main(
            [
                "specs",
                str(tmp_path / "data" / "*.root"),
                "--branches",
                "MET_pt",
                "Jet_pt",
                "--max-len",
                "4",
                "--out",
                str(spec_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "5 features from 2 branches, 500 events" in out
    saved = json.loads(spec_path.read_text())
    assert saved["features"] == ["MET_pt", "Jet_pt_0", "Jet_pt_1", "Jet_pt_2", "Jet_pt_3"]


def test_errors_exit_2_with_the_reason(tmp_path, capsys):
    assert main(["browse", str(tmp_path / "missing.root")]) == 2
    assert "missing.root" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "mlaas4hep_nb.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("make-data", "browse", "specs", "demo"):
        assert command in out.stdout


def write_events(path, branches: dict, **options) -> str:
    with uproot.recreate(path) as file:
        types = {name: np.dtype((v.dtype, v.shape[1:])) for name, v in branches.items()}
        file.mktree("Events", types, **options).extend(branches)
    return str(path)


def test_browse_an_unknown_tree_names_it_and_the_trees_there(tmp_path, capsys):
    path = write_events(tmp_path / "one.root", {"x": np.arange(3.0)})
    assert main(["browse", "--tree", "nope", path]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"mlaas4hep-nb: error: no tree 'nope' in {path}; it holds ['Events']"
    ]


def test_browse_shows_fixed_size_arrays(tmp_path, capsys):
    path = write_events(tmp_path / "fixed.root", {"a": np.zeros((4, 10), np.int32)})
    assert main(["browse", "--tree", "Events", path]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("a "))
    assert row.split()[1:4] == ["int32_t[10]", "int32", "fixed[10]"]


def test_browse_into_head_ends_quietly(tmp_path):
    # more than a pipe holds (64 KiB), so the writer is still writing when head leaves
    names = [f"b{i:03d}_" + "x" * 600 for i in range(150)]
    path = write_events(tmp_path / "wide.root", {n: np.zeros(2, np.float32) for n in names})
    browse = subprocess.Popen(
        [sys.executable, "-m", "mlaas4hep_nb.cli", "browse", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    head = subprocess.Popen(["head", "-1"], stdin=browse.stdout, stdout=subprocess.PIPE)
    browse.stdout.close()
    first, _ = head.communicate(timeout=60)
    error = browse.stderr.read()
    browse.stderr.close()
    assert browse.wait(timeout=60) == 141
    assert error == b""
    assert first.split() == [b"tree", b"kind", b"entries", b"files"]


@pytest.mark.parametrize("value", ["-1", "0"])
def test_specs_with_a_bad_max_len_is_one_error_line(tmp_path, capsys, value):
    path = write_events(tmp_path / "one.root", {"x": np.arange(3.0)})
    assert main(["specs", path, "--max-len", value, "--no-cache"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("mlaas4hep-nb: error: max_len must be a whole number >= 1")
    assert f"not {value};" in line


def test_specs_summary_aligns_long_branch_names(tmp_path, capsys):
    names = ["x", "a_branch_name_longer_than_twenty_two_characters", "mid_sized_name"]
    path = write_events(tmp_path / "long.root", {n: np.arange(4.0) for n in names})
    assert main(["specs", path, "--no-cache"]) == 0
    lines = capsys.readouterr().out.splitlines()
    kind = lines[0].index("kind")
    assert set(lines[1]) == {"-"}
    assert len(lines[1]) == len(lines[0])
    rows = lines[2 : 2 + len(names)]
    assert [row[:kind].rstrip() for row in rows] == names
    assert all(row[kind - 1] == " " and row[kind:].startswith("flat ") for row in rows)
    assert {len(row) for row in rows} == {len(lines[0])}
