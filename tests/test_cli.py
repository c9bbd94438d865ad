"""The mlaas4hep-nb command: make-data, browse, specs, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
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


def test_browse_shows_fixed_size_arrays(tmp_path, capsys):
    path = write_events(tmp_path / "fixed.root", {"a": np.zeros((4, 10), np.int32)})
    assert main(["browse", "--tree", "Events", path]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("a "))
    assert row.split()[1:4] == ["int32_t[10]", "int32", "fixed[10]"]
