"""MLaaS4HEP's workflow recipe run unchanged: ``mlaas4hep-nb workflow --files=files.txt ...``.

The model files are upstream's (vkuznet/MLaaS4HEP, src/python/MLaaS4HEP/) verbatim;
the data is generated.
"""

# ruff: noqa: E501 (upstream's model files are kept verbatim, long lines included)

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

import mlaas4hep_nb as mn
from mlaas4hep_nb.cli import main
from mlaas4hep_nb.train.models import ModelError, resolve_model

ROOT = Path(__file__).resolve().parents[2]

# upstream's keras_model.py, verbatim (Keras 2: Adam(lr=...) on line 15)
KERAS_MODEL = '''"""
Basic example of ML model implemented via Keras framework
"""
from tensorflow import keras
from keras.models import Sequential
from keras.layers import Dense

def model(idim):
    "Simple Keras model for testing purposes"
    ml_model = keras.Sequential([keras.layers.Dense(128, activation='relu',input_shape=(idim,)),
                              keras.layers.Dropout(0.5),
                              keras.layers.Dense(64, activation='relu'),
                              keras.layers.Dropout(0.5),
                              keras.layers.Dense(1, activation='sigmoid')])
    ml_model.compile(optimizer=keras.optimizers.Adam(lr=1e-3), loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.BinaryAccuracy(name='accuracy'), keras.metrics.AUC(name='auc')])
    return ml_model'''

# upstream's ex_keras.py, verbatim: two-class softmax
EX_KERAS = '''"""
Basic example of ML model implemented via Keras framework
"""
from keras.models import Sequential
from keras.layers import Dense, Activation

def model(idim):
    "Simple Keras model for testing purposes"

    ml_model = Sequential([
        Dense(32, input_shape=(idim,)),
        Activation('relu'),
        Dense(2), # use Dense(1) if you have 2 output classes
        Activation('softmax'),
    ])
    ml_model.compile(optimizer='adam', \\
                  loss='categorical_crossentropy',  # use loss='binary_crossentropy' if you have 2 output classes
                  metrics=['accuracy'])
    return ml_model'''

# the recipe's params.json (doc/workflow_recipe.md), smaller: a few seconds per run
PARAMS = {
    "nevts": 2000,
    "shuffle": True,
    "chunk_size": 1000,
    "epochs": 2,
    "batch_size": 100,
    "identifier": "",
    "branch": "Events",
    "selected_branches": "",
    "exclude_branches": ["run", "event", "luminosityBlock"],
    "hist": "pdfs",
    "redirector": "",
    "verbose": 1,
}
RECIPE = ["--files=files.txt", "--labels=labels.txt", "--model=keras_model.py"]
LR_ERROR = (
    "mlaas4hep-nb: error: keras2_model.py line 15: Adam(lr=...) is Keras 2; Keras 3 spells "
    "it learning_rate= (keras.optimizers.Adam(learning_rate=1e-3))"
)


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory) -> Path:
    """A working directory as the recipe sets it up, with relative paths in files.txt."""
    folder = tmp_path_factory.mktemp("recipe")
    files = mn.datasets.make_tth(folder / "data", 1500, 1500)
    names = [os.path.relpath(files[k][0], folder) for k in (1, 0)]
    (folder / "files.txt").write_text("# ttH signal, then ttbar\n" + "\n".join(names) + "\n")
    (folder / "labels.txt").write_text("1\n0\n")
    (folder / "params.json").write_text(json.dumps(PARAMS, indent=4))
    (folder / "quiet.json").write_text(json.dumps({**PARAMS, "verbose": 0}))
    (folder / "longer.json").write_text(json.dumps({**PARAMS, "verbose": 0, "epochs": 6}))
    (folder / "keras_model.py").write_text(KERAS_MODEL.replace("lr=1e-3", "learning_rate=1e-3"))
    (folder / "keras2_model.py").write_text(KERAS_MODEL)
    (folder / "ex_keras.py").write_text(EX_KERAS)
    return folder


@pytest.fixture
def in_recipe(recipe_dir, monkeypatch) -> Path:
    monkeypatch.chdir(recipe_dir)
    return recipe_dir


def run_workflow(*flags: str) -> None:
    assert main(["workflow", *flags]) == 0


def refused(capsys, *flags: str) -> str:
    """The one stderr line of a workflow run that must exit with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["workflow", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mlaas4hep-nb: error: ")
    return err.strip()


def auc_of(out: str) -> float:
    found = re.search(r"validation AUC ([\d.]+), accuracy [\d.]+", out)
    assert found, out
    return float(found.group(1))


def console_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``mlaas4hep-nb ARGS`` in a real process, this checkout first on the path."""
    script = Path(sys.executable).with_name("mlaas4hep-nb")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mlaas4hep_nb.cli"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


# --- the recipe, end to end ---------------------------------------------------------------


@pytest.mark.slow
def test_recipe_command_line_runs_unchanged(recipe_dir):
    done = console_script("workflow", *RECIPE, "--params=params.json", cwd=recipe_dir)
    assert done.returncode == 0, done.stderr
    assert "2 file(s) from files.txt, classes from labels.txt" in done.stdout
    assert "tth_0.root -> 1, ttbar_0.root -> 0" in done.stdout
    assert "epoch 2/2" in done.stdout
    assert auc_of(done.stdout) > 0.6
    assert "Traceback" not in done.stderr
    # Keras 3's advice against input_shape= is not shown for a model(idim) file
    assert "input_shape" not in done.stderr

    done = console_script(
        "workflow", *RECIPE[:2], "--model=keras2_model.py", "--params=quiet.json", cwd=recipe_dir
    )
    assert done.returncode == 2
    assert done.stderr.strip() == LR_ERROR


def test_keras2_model_file_is_one_line(in_recipe, capsys):
    assert refused(capsys, *RECIPE[:2], "--model=keras2_model.py", "--params=quiet.json") == (
        LR_ERROR
    )


@pytest.mark.slow
def test_ex_keras_softmax_trains_saves_and_exports(in_recipe, capsys):
    import keras

    run_workflow(*RECIPE[:2], "--model=ex_keras.py", "--params=longer.json", "--fout=ex_model")
    out = capsys.readouterr().out
    assert auc_of(out) > 0.6
    # Keras 3 writes .keras files: the name gets the suffix, and the user is told
    assert "saved ex_model.keras (--fout=ex_model:" in out
    model = keras.saving.load_model(in_recipe / "ex_model.keras")
    assert model.output_shape == (None, 2)
    assert model.predict(np.zeros((3, model.input_shape[-1])), verbose=0).shape == (3, 2)
    bundle = in_recipe / "ex_model"
    assert f"wrote the TFaaS bundle {Path('ex_model')}" in out
    assert (bundle / "saved_model.pb").is_file()
    assert json.loads((bundle / "params.json").read_text())["name"] == "ex_model"


@pytest.mark.slow
def test_labels_as_a_list_with_our_feature_spec_and_h5(in_recipe, capsys):
    import keras

    spec = mn.compute_specs(["data/tth_0.root", "data/ttbar_0.root"], max_len=4, progress=False)
    spec.save(in_recipe / "spec.json")
    run_workflow(
        "--files=data/tth_0.root,data/ttbar_0.root",
        "--labels=1,0",
        "--model=keras_model.py",
        "--params=quiet.json",
        "--specs=spec.json",
        "--fout=list_model.h5",
        "--out=list_bundle",
    )
    out = capsys.readouterr().out
    assert "classes from --labels: tth_0.root -> 1, ttbar_0.root -> 0" in out
    assert auc_of(out) > 0.6
    model = keras.saving.load_model(in_recipe / "list_model.h5", compile=False)
    assert model.input_shape == (None, spec.n_features)
    bundle = json.loads((in_recipe / "list_bundle" / "params.json").read_text())
    assert bundle["features"] == spec.features


@pytest.mark.slow
def test_labels_as_a_branch_name(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(1)
    for i in range(2):
        label = rng.integers(0, 2, 2000).astype(np.int32)
        with uproot.recreate(tmp_path / f"mixed_{i}.root") as out:
            out.mktree("Events", {"x": np.float32, "y": np.float32, "label": np.int32})
            for part in np.array_split(np.arange(2000), 2):
                out["Events"].extend(
                    {
                        "x": (rng.normal(size=part.size) + 1.5 * label[part]).astype(np.float32),
                        "y": rng.normal(size=part.size).astype(np.float32),
                        "label": label[part],
                    }
                )
    (tmp_path / "files.txt").write_text("mixed_0.root\nmixed_1.root\n")
    (tmp_path / "params.json").write_text(json.dumps({**PARAMS, "verbose": 0}))
    monkeypatch.chdir(tmp_path)
    run_workflow("--files=files.txt", "--labels=label")
    out = capsys.readouterr().out
    assert "2 file(s) from files.txt, class from the branch 'label'" in out
    assert "no --model: training the built-in MLP" in out
    assert "DataStream(" in out
    assert "2 features" in out  # x, y: the label branch is no feature
    assert auc_of(out) > 0.75


# --- refused with one line ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--preproc=ex_preproc.py", "--preproc=ex_preproc.py: preprocessing functions apply to"),
        ("--dtype=json", "--dtype=json: mlaas4hep-nb reads ROOT files only"),
        ("--specs=global-specs.json", "global-specs.json is an MLaaS4HEP specs file"),
        ("--specs=params.json", "params.json is not a FeatureSpec"),
        ("--model=missing_model.py", "model file missing_model.py not found"),
        ("--params=missing.json", "params file missing.json not found"),
    ],
)
def test_flags_refused(in_recipe, capsys, flag, expected):
    (in_recipe / "global-specs.json").write_text(
        json.dumps({"jdim": {}, "minv": {}, "maxv": {}, "fkeys": [], "jkeys": [], "nans": {}})
    )
    assert expected in refused(capsys, *RECIPE, "--params=quiet.json", flag)


def test_unknown_params_key(in_recipe, capsys):
    (in_recipe / "bad_params.json").write_text(json.dumps({**PARAMS, "learning_rate": 0.01}))
    err = refused(capsys, *RECIPE, "--params=bad_params.json")
    assert "unknown MLaaS4HEP parameter(s) 'learning_rate' in bad_params.json" in err


@pytest.mark.parametrize(
    ("files", "labels", "expected"),
    [
        (
            "# one missing\ndata/tth_0.root\ndata/nothere.root\n",
            "1\n0\n",
            "files.txt line 3: ROOT file data/nothere.root not found (relative paths are read "
            "from the current directory",
        ),
        ("data/tth_0.root\nevents.csv\n", "1\n0\n", "files.txt line 2: events.csv is CSV data"),
        ("data/tth_0.root\ndata/ttbar_0.root\n", "1\n", "labels.txt gives 1 label(s) for the 2"),
        (
            "data/tth_0.root\ndata/ttbar_0.root\n",
            "signal\nbackground\n",
            "labels.txt line 1: label 'signal' is not an integer",
        ),
        (
            "data/tth_0.root\ndata/ttbar_0.root\n",
            "2\n1\n",
            "labels.txt: the labels [1, 2] are not the classes 0..K-1",
        ),
    ],
)
def test_bad_files_or_labels_named(
    tmp_path, recipe_dir, monkeypatch, capsys, files, labels, expected
):
    (tmp_path / "data").symlink_to(recipe_dir / "data")
    (tmp_path / "files.txt").write_text(files)
    (tmp_path / "labels.txt").write_text(labels)
    monkeypatch.chdir(tmp_path)
    assert expected in refused(capsys, "--files=files.txt", "--labels=labels.txt")


# --- user model code: one line naming the file and the line ---------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "import keras\ndef model(idim):\n    opt = keras.optimizers.SGD(momentum=0.9, lr=0.1)\n",
            "m.py line 3: SGD(lr=...) is Keras 2; Keras 3 spells it learning_rate= "
            "(keras.optimizers.SGD(momentum=0.9, learning_rate=0.1))",
        ),
        (
            "from keras.layers.core import Dense, Dropout\ndef model(idim):\n    pass\n",
            "m.py line 1: keras.layers.core is a Keras 2 module that Keras 3 does not have; its "
            "layers are in keras.layers (from keras.layers import Dense, Dropout)",
        ),
        (
            "import keras\ndef model(idim):\n    keras.optimizers.legacy.Adam(learning_rate=1)\n",
            "m.py line 3: keras.optimizers.legacy is Keras 2; Keras 3 spells it "
            "keras.optimizers.Adam(learning_rate=...)",
        ),
        (
            "import keras\ndef model(idim):\n    m = keras.Sequential()\n"
            "    return m.fit_generator\n",
            "m.py line 4: model.fit_generator is Keras 2; Keras 3 spells it model.fit(generator",
        ),
        (
            "def helper(n):\n    return n / 0\n\ndef model(idim):\n    return helper(idim)\n",
            "m.py line 2: ZeroDivisionError: division by zero (in `return n / 0`)",
        ),
        ("def model(idim)\n    pass\n", "m.py line 1: SyntaxError: expected ':'"),
        ("def build(idim):\n    pass\n", "model file m.py defines no function model(idim)"),
    ],
)
def test_model_file_errors_are_one_line(tmp_path, monkeypatch, source, expected):
    (tmp_path / "m.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as error:
        resolve_model("m.py", 4, 2)
    assert str(error.value).startswith(expected)
    assert "\n" not in str(error.value)


def test_function_errors_name_their_file_and_line():
    def model(idim):
        return {}["no " + str(idim)]

    with pytest.raises(ModelError) as error:
        resolve_model(model, 4, 2)
    line = model.__code__.co_firstlineno + 1
    assert (
        str(error.value)
        == f"{__file__} line {line}: KeyError: 'no 4' (in `return {{}}[\"no \" + str(idim)]`)"
    )
    assert isinstance(error.value.__cause__, KeyError)


def test_keras_warnings_point_at_the_user_line(tmp_path, monkeypatch):
    (tmp_path / "decay.py").write_text(
        "import keras\n"
        "def model(idim):\n"
        "    m = keras.Sequential([keras.layers.Dense(1, input_shape=(idim,))])\n"
        "    m.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, decay=1e-4), loss='mse')\n"
        "    return m\n"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="decay") as caught:
        resolve_model("decay.py", 4, 2)
    # the input_shape advice is not shown; decay's warning names the line and Keras 3's way
    assert [(w.filename, w.lineno) for w in caught] == [("decay.py", 4)]
    assert str(caught[0].message) == (
        "decay= is Keras 2 (Keras 3 ignores it); Keras 3 spells it learning_rate="
        "keras.optimizers.schedules.InverseTimeDecay(0.1, decay_steps=1, decay_rate=1e-4)"
    )


@pytest.mark.slow
def test_training_panel_shows_the_line(recipe_dir):
    from mlaas4hep_nb.widgets import TrainingPanel

    files = {1: [str(recipe_dir / "data/tth_0.root")], 0: [str(recipe_dir / "data/ttbar_0.root")]}
    panel = TrainingPanel(mn.DataStream(files, branches=["MET_pt"], progress=False), epochs=1)
    panel.model_kind.value = "file"
    panel.model_file.value = str(recipe_dir / "keras2_model.py")
    with pytest.raises(ModelError):
        panel.train(wait=True)
    assert panel.status.message == (
        f"training failed: ModelError: {recipe_dir / 'keras2_model.py'} line 15: Adam(lr=...) "
        "is Keras 2; Keras 3 spells it learning_rate= (keras.optimizers.Adam(learning_rate=1e-3))"
    )


def test_train_refuses_a_save_name_keras_cannot_write_before_training(in_recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train",
                "--signal=data/tth_0.root",
                "--background=data/ttbar_0.root",
                "--out=never",
                "--save=model.pb",
            ]
        )
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "mlaas4hep-nb: error: --save model.pb: Keras 3 saves models to .keras (or legacy .h5) "
        "files\n"
    )
    assert not (in_recipe / "never").exists()
