"""The training layer: Trainer on generated ttH data, stop, user models, export, bad input."""

from __future__ import annotations

import base64
import gc
import json
import threading
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

import mlaas4hep_nb as mn
from mlaas4hep_nb import cli
from mlaas4hep_nb.errors import EmptyDataError
from mlaas4hep_nb.train.export import MaskRule
from mlaas4hep_nb.train.feed import RowBuffer
from mlaas4hep_nb.train.metrics import auc, roc_curve
from mlaas4hep_nb.train.mlaas_params import ParamsError, load_mlaas_params
from mlaas4hep_nb.train.models import ModelError

USER_MODEL = """
import keras

def model(idim):
    inputs = keras.Input((idim,), name="inputs")
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    output = keras.layers.Dense(1, activation="sigmoid")(hidden)
    ml_model = keras.Model(inputs, output)
    ml_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                     metrics=["accuracy"])
    return ml_model
"""


def stream_of(files, **kwargs):
    return mn.DataStream(files, chunk_size=2000, batch_size=128, progress=False, **kwargs)


class BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


@pytest.fixture(scope="module")
def trained(tth):
    """The default MLP trained for 4 epochs on 6,000 ttH/ttbar events."""
    trainer = mn.Trainer(stream_of(tth), epochs=4)
    history = trainer.fit(live_plot=False, progress=False)
    return trainer, history


def test_default_model_learns(trained):
    trainer, history = trained
    h = history.history
    assert {"loss", "val_loss", "auc", "val_auc", "accuracy", "val_accuracy"} <= set(h)
    assert len(h["loss"]) == 4
    assert h["loss"][-1] < h["loss"][0]
    assert h["val_loss"][-1] < h["val_loss"][0]
    assert h["val_auc"][-1] >= 0.8
    assert trainer.epoch == 4


def test_evaluate_reports_auc_roc_confusion(trained):
    trainer, history = trained
    result = trainer.evaluate()
    assert result["auc"] >= 0.8
    # same events, same weights: the streamed evaluation agrees with Keras's validation
    assert result["auc"] == pytest.approx(history.history["val_auc"][-1], abs=0.01)
    assert result["loss"] == pytest.approx(history.history["val_loss"][-1], abs=0.01)
    fpr, tpr, thresholds = result["roc"]
    assert fpr[0] == tpr[0] == 0
    assert fpr[-1] == pytest.approx(1)
    assert tpr[-1] == pytest.approx(1)
    assert np.all(np.diff(fpr) >= 0)
    assert np.all(np.diff(thresholds) <= 0)
    assert result["confusion"].shape == (2, 2)
    assert result["confusion"].sum() == result["n_events"] == trainer.n_validation
    correct = np.trace(result["confusion"]) / result["n_events"]
    assert result["accuracy"] == pytest.approx(correct)


def test_plots_are_figures(trained):
    from matplotlib.figure import Figure

    trainer, _ = trained
    roc, scores, curves = trainer.plot_roc(), trainer.plot_scores(), trainer.plot_history()
    assert all(isinstance(f, Figure) for f in (roc, scores, curves))
    assert "AUC" in roc.axes[0].get_legend().get_texts()[0].get_text()
    assert [t.get_text().split(" ")[0] for t in scores.axes[0].get_legend().get_texts()] == [
        "background",
        "signal",
    ]
    assert len(curves.axes) == 2


def test_export_reloads_and_predicts_as_in_memory(trained, tmp_path):
    trainer, _ = trained
    bundle = trainer.export(tmp_path / "tth")
    assert {p.name for p in bundle.iterdir()} >= {
        "saved_model.pb",
        "variables",
        "assets",
        "params.json",
        "labels.txt",
    }
    assert (bundle / "assets").is_dir()
    assert (bundle / "labels.txt").read_text().splitlines() == ["background", "signal"]
    params = json.loads((bundle / "params.json").read_text())
    assert params["name"] == "tth"
    assert params["model"] == "saved_model.pb"
    assert params["labels"] == "labels.txt"
    assert params["input_name"] == "inputs"
    # the op names upstream TFaaS (tfgo) feeds and fetches for a SavedModel
    assert params["op"] == params["input_node"] == "serving_default_inputs_input"
    assert params["output_node"] == params["outputNode"] == "StatefulPartitionedCall"
    assert params["features"] == trainer.stream.features
    assert mn.FeatureSpec.from_dict(params["spec"]) == trainer.stream.spec
    assert params["spec"]["normalize"] == "minmax"

    assert params["spec"]["serving_mask"]["Jet_pt"] == "counter nJet"
    assert params["spec"]["serving_mask"]["Muon_charge"] == "counter nMuon"

    x, mask, _ = next(trainer.stream.chunks("validation"))
    served = tf.saved_model.load(str(bundle))
    default = served.signatures["serving_default"](inputs=tf.constant(x))["output_0"].numpy()
    np.testing.assert_allclose(default, trainer.predict(x), atol=1e-5)
    with_mask = served.signatures["serving_with_mask"](
        inputs=tf.constant(x), mask=tf.constant(mask.astype(np.float32))
    )["output_0"].numpy()
    np.testing.assert_allclose(with_mask, trainer.predict(x, mask), atol=1e-5)
    # every jagged branch has its counter: X alone gives the true mask, as in training
    np.testing.assert_array_equal(trainer.mask_rule.numpy(x), mask)
    np.testing.assert_allclose(default, with_mask, atol=1e-5)
    # as upstream runs it: a TF1 session feeding and fetching graph ops by name
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        tf.compat.v1.saved_model.loader.load(session, ["serve"], str(bundle))
        upstream = session.run(params["output_node"] + ":0", {params["input_node"] + ":0": x})
    np.testing.assert_allclose(upstream, trainer.predict(x), atol=1e-5)


def test_serving_mask_rules(trained):
    trainer, _ = trained
    stream = trainer.stream
    features = stream.features
    x = np.zeros((1, stream.n_features), np.float32)
    muon = stream.spec.branch("nMuon")
    x[0, features.index("nMuon")] = (1 - muon.min) / (muon.max - muon.min)  # one muon
    x[0, features.index("Muon_charge_0")] = 0.0  # charge -1 after minmax: a real zero
    counter = trainer.mask_rule.numpy(x)[0]
    assert counter[features.index("nJet")]  # flat: always a real value
    assert counter[features.index("Muon_charge_0")]
    assert not counter[features.index("Muon_charge_1")]
    nonzero = MaskRule(stream.spec, stream.normalize).numpy(x)[0]
    assert not nonzero[features.index("Muon_charge_0")]  # the documented edge case
    # the graph derives the same mask as numpy
    np.testing.assert_array_equal(trainer.mask_rule.tensor(tf.constant(x)).numpy()[0], counter)
    # a counter that does not give the true mask is not used
    x2, mask2, _ = next(stream.chunks("validation"))
    wrong = mask2.copy()
    wrong[:, features.index("Jet_pt_0")] = False
    rule = MaskRule.fit(stream.spec, stream.normalize, [(x2, wrong)])
    assert rule.describe()["Jet_pt"] == "nonzero"
    assert rule.describe()["Jet_eta"] == "counter nJet"


def test_save_writes_keras_file_that_reloads(trained, tmp_path):
    trainer, _ = trained
    path = trainer.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(path)
    x, mask, _ = next(trainer.stream.chunks("validation"))
    inputs = [x, mask.astype(np.float32)]
    np.testing.assert_allclose(
        reloaded.predict(inputs, verbose=0), trainer.predict(x, mask), atol=1e-5
    )
    with pytest.raises(ValueError, match=r"\.keras"):
        trainer.save(tmp_path / "model.h5")


def test_stop_from_another_thread_ends_fit_within_one_batch(tth):
    trainer = mn.Trainer(stream_of(tth), epochs=50)
    counter = BatchCounter()
    trainer.callbacks.append(counter)
    reached = threading.Event()
    asked = threading.Event()

    class Pause(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 3 and not reached.is_set():
                reached.set()
                assert asked.wait(30)

    trainer.callbacks.insert(0, Pause())
    result = {}
    thread = threading.Thread(target=lambda: result.update(h=trainer.fit(False, False)))
    thread.start()
    assert reached.wait(60)
    trainer.stop()
    at_stop = counter.batches
    asked.set()
    thread.join(60)
    assert not thread.is_alive()
    # the batch in progress when stop() came is the last one
    assert counter.batches <= at_stop + 1
    history = result["h"].history
    assert len(history["loss"]) == 1
    assert "val_auc" in history
    assert trainer.epoch == 1
    # one pass counted per epoch begun, though the next epoch's pass may have begun early
    assert trainer.stream.passes["train"] == 1
    assert trainer.predict(np.zeros((2, trainer.stream.n_features))).shape == (2, 1)


def test_user_model_function(tth):
    def model(idim):
        inputs = keras.Input((idim,), name="inputs")
        output = keras.layers.Dense(1, activation="sigmoid")(inputs)
        built = keras.Model(inputs, output)
        built.compile(optimizer="sgd", loss="binary_crossentropy")
        return built

    trainer = mn.Trainer(stream_of(tth), model=model, epochs=1)
    assert not trainer.layout.takes_mask
    assert isinstance(trainer.model.optimizer, keras.optimizers.SGD)  # the user's optimizer
    history = trainer.fit(live_plot=False, progress=True)
    assert {"loss", "auc", "val_loss", "val_auc"} <= set(history.history)


def test_mlaas4hep_style_softmax_model_gets_one_hot_targets(tth):
    def model(idim):
        inputs = keras.Input((idim,), name="inputs")
        output = keras.layers.Dense(2, activation="softmax")(inputs)
        built = keras.Model(inputs, output)
        built.compile(optimizer="adam", loss="categorical_crossentropy")
        return built

    trainer = mn.Trainer(stream_of(tth), model=model, epochs=3)
    assert trainer.layout.n_outputs == 2
    history = trainer.fit(live_plot=False, progress=False).history
    assert history["loss"][-1] < history["loss"][0]
    result = trainer.evaluate()
    assert result["confusion"].shape == (2, 2)
    assert result["auc"] > 0.6


def test_uncompiled_model_gets_the_trainers_optimizer(tth):
    inputs = keras.Input((96,), name="inputs")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    trainer = mn.Trainer(stream_of(tth), model=model, optimizer="sgd", learning_rate=0.05)
    assert isinstance(trainer.model.optimizer, keras.optimizers.SGD)
    assert float(trainer.model.optimizer.learning_rate) == pytest.approx(0.05)
    assert trainer.model.loss == "binary_crossentropy"


def test_sparse_loss_is_refused(tth):
    inputs = keras.Input((96,), name="inputs")
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ModelError, match=r"sparse loss .* use categorical_crossentropy"):
        mn.Trainer(stream_of(tth), model=model)


def test_early_stopping_settings(tth):
    trainer = mn.Trainer(stream_of(tth), early_stopping=3)
    assert trainer.early_stopping.patience == 3
    assert trainer.early_stopping.monitor == "val_loss"
    assert trainer.early_stopping.restore_best_weights
    with pytest.raises(TypeError, match=r"early_stopping must be"):
        mn.Trainer(stream_of(tth), early_stopping="soon")


def test_user_model_file(tth, tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(USER_MODEL)
    trainer = mn.Trainer(stream_of(tth), model=str(path), epochs=2)
    history = trainer.fit(live_plot=False, progress=False)
    assert trainer.model.layers[1].units == 32
    assert history.history["val_auc"][-1] > 0.7
    x, _, _ = next(trainer.stream.chunks("validation"))
    assert trainer.predict(x).shape == (len(x), 1)


def test_three_classes(tth, tmp_path):
    stream = stream_of({0: tth[0][0], 1: tth[1][0], 2: [tth[0][1], tth[1][1]]})
    trainer = mn.Trainer(stream, epochs=2)
    assert trainer.model.output_shape == (None, 3)
    history = trainer.fit(live_plot=False, progress=False)
    assert {"loss", "auc", "val_auc", "val_accuracy"} <= set(history.history)
    result = trainer.evaluate()
    assert result["confusion"].shape == (3, 3)
    assert 0.5 < result["auc"] <= 1
    x, _, _ = next(stream.chunks("validation"))
    probabilities = trainer.predict(x)
    assert probabilities.shape == (len(x), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    bundle = trainer.export(tmp_path / "three")
    assert (bundle / "labels.txt").read_text().splitlines() == ["0", "1", "2"]


def test_same_seed_same_metrics(tth):
    histories = [
        mn.Trainer(stream_of(tth, seed=3), epochs=2).fit(False, False).history for _ in range(2)
    ]
    for key in ("loss", "val_loss", "val_auc"):
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-5)


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_the_cache_changes_no_metric_and_later_epochs_read_no_file(tth, cache, monkeypatch):
    from mlaas4hep_nb.data import reader

    reads = []
    read = reader.UnitReader.__call__

    def counting(self, unit):
        reads.append(unit)
        return read(self, unit)

    monkeypatch.setattr(reader.UnitReader, "__call__", counting)
    histories = []
    for option in (False, cache):
        reads.clear()
        stream = stream_of(tth, seed=3, cache=option)
        trainer = mn.Trainer(stream, epochs=3)
        histories.append(trainer.fit(False, False).history)
        trainer.fit(False, False)  # a second fit goes on with the passes (the shuffles) after
        histories[-1] = {k: v + trainer.history.history[k] for k, v in histories[-1].items()}
        units = sum(len(units) for units in stream._units)
        assert len(reads) == (6 * units if option is False else units)
        assert stream.passes["train"] == 6
    for key in ("loss", "val_loss", "auc", "val_auc"):
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-5)
    assert stream.report["cache"]["complete"]


def test_a_fit_keeps_no_chunk_alive(tth):
    """Every epoch's chunks are freed: memory does not grow with the epochs (it once did)."""
    stream = stream_of(tth)
    trainer = mn.Trainer(stream, epochs=3)
    seen = []
    split_chunks = stream.split_chunks

    def recording(*args):
        for train, validation in split_chunks(*args):
            seen.append(weakref.ref(train[0].base))  # the chunk's X, train and validation rows
            yield train, validation

    stream.split_chunks = recording
    trainer.fit(False, False)
    gc.collect()
    assert len(seen) >= 3 * stream.n_chunks
    assert [ref for ref in seen if ref() is not None] == []


def test_max_events_limits_each_epoch(tth):
    trainer = mn.Trainer(stream_of(tth), epochs=1, max_events=500)
    counter = BatchCounter()
    trainer.callbacks.append(counter)
    trainer.fit(live_plot=False, progress=False)
    assert trainer.n_train == 500
    assert counter.batches == 4  # ceil(500 / 128)


def test_live_plot_records_epochs_and_draws_at_most_twice_a_second(tth):
    plot = mn.LivePlot(notebook=True, show=False, min_interval=0.5)
    trainer = mn.Trainer(stream_of(tth), epochs=2)
    start = tf.timestamp().numpy()
    trainer.fit(live_plot=plot, progress=False)
    elapsed = tf.timestamp().numpy() - start
    assert len(plot.history["loss"]) == len(plot.history["val_auc"]) == 2
    assert len(plot.batch_loss) == 2 * int(np.ceil(trainer.n_train / 128))
    assert plot.batch_x[-1] == pytest.approx(2.0)
    assert 1 <= plot.draws <= elapsed / 0.5 + 2
    (shown,) = plot.output.outputs  # the last drawing replaced the ones before
    assert base64.b64decode(shown["data"]["image/png"]).startswith(b"\x89PNG")
    figure = plot.figure()
    assert len(figure.axes) == 2
    assert figure.axes[0].get_ylabel() == "loss"
    assert figure.axes[1].get_ylabel() == "AUC"


def test_live_plot_prints_one_line_per_epoch_outside_a_notebook(tth, capsys):
    plot = mn.LivePlot()
    assert not plot.notebook
    mn.Trainer(stream_of(tth), epochs=2, max_events=600).fit(live_plot=plot, progress=False)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2: loss ")
    assert "val_auc" in lines[0]
    assert plot.draws == 0


# --- bad input: each a clear error before training starts ---------------------------------


def test_model_input_width_mismatch(tth):
    inputs = keras.Input((5,), name="inputs")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    with pytest.raises(ModelError, match=r"expects 5 input features but the stream gives 96"):
        mn.Trainer(stream_of(tth), model=model)


def test_model_output_width_mismatch(tth):
    inputs = keras.Input((96,), name="inputs")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    with pytest.raises(ModelError, match=r"3 outputs but the stream has 2 classes"):
        mn.Trainer(stream_of(tth), model=model)


def test_model_file_without_model_function(tth, tmp_path):
    path = tmp_path / "not_a_model.py"
    path.write_text("def build(idim):\n    return None\n")
    with pytest.raises(ModelError, match=r"not_a_model\.py defines no function model\(idim\)"):
        mn.Trainer(stream_of(tth), model=str(path))


def test_model_function_returning_no_model(tth):
    with pytest.raises(ModelError, match=r"returned NoneType, not a keras\.Model"):
        mn.Trainer(stream_of(tth), model=lambda idim: None)


def test_empty_stream(tth):
    with pytest.raises(EmptyDataError, match=r"cut 'MET_pt < 0' leaves no events"):
        stream_of(tth, cut="MET_pt < 0")
    # a spec computed without the cut lets the stream open; the Trainer refuses it
    spec = stream_of(tth).spec
    stream = stream_of(tth, specs=spec, cut="MET_pt < 0")
    with pytest.raises(EmptyDataError, match=r"no training events after the cut 'MET_pt < 0'"):
        mn.Trainer(stream)


def test_single_class_stream(tth):
    with pytest.raises(EmptyDataError, match=r"needs two or more labels"):
        mn.Trainer(stream_of({0: tth[0]}))


def test_read_error_during_fit_is_raised_as_itself(tth):
    from mlaas4hep_nb.errors import SourceError

    stream = stream_of(tth)
    trainer = mn.Trainer(stream, epochs=1)

    first = next(iter(stream.split_chunks()))

    def broken(*_):
        yield first
        raise SourceError("cannot read root://host//store/bkg_3.root: connection reset")

    stream.split_chunks = broken
    with pytest.raises(SourceError, match=r"bkg_3\.root: connection reset"):
        trainer.fit(live_plot=False, progress=False)


def test_predict_rejects_wrong_width(trained):
    trainer, _ = trained
    with pytest.raises(ValueError, match=r"shape \[n, 96\]"):
        trainer.predict(np.zeros((3, 7)))


def test_unknown_params_key(tmp_path, tth, capsys):
    with pytest.raises(ParamsError, match=r"unknown MLaaS4HEP parameter\(s\) 'learning_rat'"):
        load_mlaas_params({"epochs": 2, "learning_rat": 0.1})
    path = tmp_path / "params.json"
    path.write_text(json.dumps({"epochs": 1, "bogus": True}))
    argv = ["train", "--signal", *tth[1], "--background", *tth[0], "--out", str(tmp_path / "b")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--params", str(path)])
    assert exit_info.value.code == 2
    assert "'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


# --- pieces -------------------------------------------------------------------------------


def test_mlaas_params_map_to_stream_and_trainer(tmp_path):
    excluded = tmp_path / "exclude.txt"
    excluded.write_text("Muon_charge\n# a comment\nElectron_charge\n")
    params = load_mlaas_params(
        {
            "nevts": 3000,
            "shuffle": True,
            "chunk_size": 1000,
            "epochs": 7,
            "batch_size": 64,
            "branch": "Events",
            "selected_branches": "nJet,Jet_pt",
            "exclude_branches": str(excluded),
            "identifier": ["run", "event", "luminosityBlock"],
            "redirector": "root://cms-xrd-global.cern.ch",
            "hist": "pdfs",
            "verbose": 0,
        }
    )
    assert params.trainer == {"max_events": 3000, "epochs": 7}
    assert params.stream["tree"] == "Events"
    assert params.stream["branches"] == ["nJet", "Jet_pt"]
    assert params.stream["exclude"] == [
        "run",
        "event",
        "luminosityBlock",
        "Muon_charge",
        "Electron_charge",
    ]
    assert params.stream["chunk_size"] == 1000
    assert params.stream["batch_size"] == 64
    assert params.stream["redirector"] == "root://cms-xrd-global.cern.ch"
    assert params.stream["progress"] is False
    assert params.ignored == ("hist",)
    assert load_mlaas_params({"nevts": -1}).trainer == {"max_events": None}
    with pytest.raises(ParamsError, match=r"'epochs' must be an integer"):
        load_mlaas_params({"epochs": "five"})


def test_cli_train_writes_bundle(tth, tmp_path, capsys):
    out = tmp_path / "cli-bundle"
    code = cli.main(
        [
            "train",
            "--signal",
            *tth[1],
            "--background",
            *tth[0],
            "--epochs",
            "1",
            "--batch-size",
            "256",
            "--out",
            str(out),
            "--name",
            "tth-cli",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "validation AUC" in printed
    assert "epoch 1/1" in printed
    assert json.loads((out / "params.json").read_text())["name"] == "tth-cli"


def test_row_buffer_spills_to_disk_and_reads_back():
    rng = np.random.default_rng(0)
    parts = [
        (
            rng.random((n, 4), dtype=np.float32),
            rng.random((n, 4)) > 0.5,
            np.arange(n, dtype=np.float32),
        )
        for n in (5, 0, 7)
    ]
    buffer = RowBuffer(spill_bytes=100)
    for part in parts:
        buffer.append(*part)
    assert buffer.spilled
    assert buffer.rows == 12
    kept = buffer.parts()
    assert isinstance(kept[-1][0], np.memmap)
    for (x, mask, y), (x0, mask0, y0) in zip(kept, [parts[0], parts[2]], strict=True):
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(mask, mask0)
        np.testing.assert_array_equal(y, y0)
    buffer.close()
    assert buffer.parts() == []
    assert not buffer.spilled


def test_roc_and_auc_match_known_values():
    y = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    fpr, tpr, thresholds = roc_curve(y, scores)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert thresholds[0] == np.inf
    assert auc(fpr, tpr) == pytest.approx(0.75)
    # ties form one point
    fpr, tpr, _ = roc_curve([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])
    assert auc(fpr, tpr) == pytest.approx(0.5)


def test_import_does_not_load_tensorflow():
    import subprocess
    import sys

    code = "import sys, mlaas4hep_nb as mn; mn.DataStream; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
