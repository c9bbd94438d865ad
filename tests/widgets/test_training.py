"""TrainingPanel, DeployPanel and Workbench, driven by setting values and clicking buttons."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
import pytest

import mlaas4hep_nb as mn
from mlaas4hep_nb.widgets import Browser, DeployPanel, TrainingPanel, Workbench
from mlaas4hep_nb.widgets.training import cache_note, parse_hidden

pytestmark = pytest.mark.slow

BRANCHES = ["nJet", "Jet_pt", "Jet_btagDeepB", "MET_pt"]


def png(image) -> bytes:
    return bytes(image.value)


@pytest.fixture(scope="module")
def stream(tth):
    return mn.DataStream(tth, branches=BRANCHES, max_len=6, chunk_size=3000, progress=False)


@pytest.fixture(scope="module")
def trained(stream) -> TrainingPanel:
    """A panel that trained 2 epochs by its Train button."""
    panel = TrainingPanel(stream, epochs=2, batch_size=64)
    panel.hidden.value = "32, 16"
    panel.train_button.click()
    assert panel.train_button.disabled
    assert not panel.stop_button.disabled
    panel.wait()
    return panel


def test_train_button_trains_and_shows_results(trained, stream):
    panel = trained
    assert panel.status.error is None, panel.status.traceback
    assert panel.trainer.stream is stream
    assert panel.trainer.batch_size == 64
    assert panel.trainer.epoch == 2
    assert [layer.units for layer in panel.trainer.model.layers if hasattr(layer, "units")] == [
        32,
        16,
        1,
    ]
    assert len(panel.history["val_auc"]) == 2
    assert panel.result["auc"] > 0.7
    assert panel.status.message.startswith(
        f"trained 2 epoch(s): validation AUC {panel.result['auc']:.4f}; epoch 2+: from cache ("
    )
    assert panel.status.message.endswith(" MiB, memory)")
    (live,) = panel.live_box.children  # the training layer's LivePlot, drawn in the panel
    assert live is panel.trainer.live_plot.output
    assert panel.trainer.live_plot.draws >= 1
    assert base64.b64decode(live.outputs[0]["data"]["image/png"]).startswith(b"\x89PNG")
    for image in (panel.roc_image, panel.scores_image):
        assert png(image).startswith(b"\x89PNG")
    assert f"{panel.result['auc']:.4f}" in panel.metrics.value
    assert "last epoch val_auc" in panel.metrics.value
    assert not panel.train_button.disabled
    assert panel.stop_button.disabled
    assert not panel.export_button.disabled
    assert panel.refresh_source() is None
    assert "DataStream" in panel.source_line.value


def test_export_button_writes_a_bundle(trained, tmp_path):
    trained.export_path.value = str(tmp_path / "tth")
    trained.export_button.click()
    trained.wait()
    assert trained.bundle == tmp_path / "tth"
    assert (tmp_path / "tth" / "params.json").is_file()
    assert (tmp_path / "tth" / "saved_model.pb").is_file() or any(
        (tmp_path / "tth").rglob("saved_model.pb")
    )


def test_cache_note_says_where_later_epochs_read(tth, tmp_path):
    assert cache_note({"mode": None}) == "epoch 2+: read from the files (cache off)"
    stream = mn.DataStream(
        tth, branches=BRANCHES, max_len=6, cache=tmp_path, chunk_size=3000, progress=False
    )
    list(stream.chunks())
    note = cache_note(stream.report["cache"])
    assert note.startswith("epoch 2+: from cache (")
    assert f"files in {tmp_path}" in note
    stream = mn.DataStream(
        tth, branches=BRANCHES, cache="memory", cache_limit=0, chunk_size=3000, progress=False
    )
    list(stream.chunks())
    note = cache_note(stream.report["cache"])
    assert note.startswith("epoch 2+: partly read from the files (cache_limit reached")


def test_stop_ends_training_early(tth):
    stream = mn.DataStream(tth, branches=BRANCHES, max_len=6, chunk_size=3000, progress=False)
    panel = TrainingPanel(stream, epochs=200, batch_size=16)
    panel.train_button.click()
    deadline = time.monotonic() + 120
    while not panel.status.message.startswith("epoch ") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert panel.status.message.startswith("epoch 1/200: batch ")
    panel.stop_button.click()
    panel.wait()
    assert 1 <= panel.trainer.epoch < 200
    assert "(stopped early)" in panel.status.message
    assert png(panel.roc_image).startswith(b"\x89PNG")


def test_model_from_a_file_or_a_function(stream, tmp_path):
    source = tmp_path / "mymodel.py"
    source.write_text(
        "import keras\n"
        "def model(idim):\n"
        "    layers = [keras.Input((idim,), name='inputs'), keras.layers.Dense(1, 'sigmoid')]\n"
        "    m = keras.Sequential(layers, name='from_file')\n"
        "    m.compile(optimizer='adam', loss='binary_crossentropy')\n"
        "    return m\n"
    )
    panel = TrainingPanel(stream, epochs=1)
    panel.model_kind.value = "file"
    assert panel._model_options.children == (panel.model_file,)
    panel.model_file.value = str(source)
    panel.train(wait=True)
    assert panel.trainer.model.name == "from_file"

    def tiny(idim):
        import keras

        return keras.Sequential(
            [keras.Input((idim,), name="inputs"), keras.layers.Dense(1, activation="sigmoid")],
            name="tiny",
        )

    panel = TrainingPanel(stream, model=tiny, epochs=1)
    assert panel.model_kind.value == "function"
    assert panel.function_name.value == "tiny"
    panel.train(wait=True)
    assert panel.trainer.model.name == "tiny"
    built = tiny(stream.n_features)
    panel = TrainingPanel(stream, model=built, epochs=1)
    assert panel.function_name.value == "tiny"
    panel.train(wait=True)
    assert panel.trainer.model is built


def test_bad_settings_show_a_readable_error(stream):
    panel = TrainingPanel(stream, epochs=1)
    panel.hidden.value = "128, lots"
    panel.train_button.click()
    with pytest.raises(ValueError, match="layer sizes must be positive integers"):
        panel.wait()
    assert panel.status.message.startswith("training failed: ValueError: layer sizes")
    assert "Traceback" in panel.status.traceback_html.value
    assert not panel.train_button.disabled
    panel.model_kind.value = "function"
    panel.function_name.value = "undefined_model"
    panel.train(wait=False)
    with pytest.raises(NameError, match="no function 'undefined_model' in this notebook"):
        panel.wait()
    assert parse_hidden("64 32") == (64, 32)


def test_deploy_panel_pushes_lists_tests_and_deletes(trained, tmp_path):
    panel = DeployPanel(trained, name="tth_test", model_dir=tmp_path / "models")
    assert "Trainer(model" in panel.source_line.value
    panel.server_button.click()
    panel.wait()
    try:
        assert panel.url.value == panel.server.url
        assert panel.server_button.description == "Stop local server"
        panel.push_button.click()
        panel.wait()
        assert panel.status.error is None, panel.status.traceback
        assert panel.models == ["tth_test"]
        assert panel.model_list.options == ("tth_test",)
        assert (tmp_path / "models").is_dir()
        panel.test_button.click()
        panel.wait()
        assert panel.test["max_diff"] < 1e-4
        assert len(panel.test["served"]) == 500
        assert png(panel.test_image).startswith(b"\x89PNG")
        assert "max |served − local|" in panel.test_text.value
        client = mn.TFaaSClient(panel.url.value)
        assert client.models() == ["tth_test"]
        panel.model_list.value = "tth_test"
        # Delete asks first; Cancel keeps the model
        panel.delete_button.click()
        assert panel.confirm_box.layout.display == ""
        assert panel.delete_button.layout.display == "none"
        assert "Delete <b>&#x27;tth_test&#x27;</b>?" in panel.confirm_text.value
        panel.cancel_button.click()
        assert panel.confirm_box.layout.display == "none"
        assert panel.delete_button.layout.display == ""
        assert client.models() == ["tth_test"]
        panel.delete_button.click()
        panel.confirm_button.click()
        panel.wait()
        assert panel.status.message == "deleted 'tth_test'"
        assert panel.models == []
        assert client.models() == []
        assert panel.confirm_box.layout.display == "none"
        # the test of the deleted model is gone with it
        assert panel.test is None
        assert panel.test_text.value == ""
        assert panel.test_image.layout.display == "none"
        panel.refresh_button.click()
        panel.wait()
        assert panel.status.message == f"0 model(s) on {panel.url.value}"
    finally:
        panel.server_button.click()  # stops it
    assert panel.server is None
    assert panel.server_button.description == "Start local server"
    # the stopped server's URL and models are cleared: Push asks for an endpoint
    assert panel.url.value == ""
    assert panel.model_list.options == ()
    assert panel.status.message.startswith("stopped the local server at http://127.0.0.1:")
    with pytest.raises(ValueError, match="no endpoint: type the TFaaS server's URL"):
        panel.push(wait=True)


def test_deploy_panel_forgets_the_models_and_test_of_another_endpoint(trained, tmp_path):
    panel = DeployPanel(trained, name="tth_other", model_dir=tmp_path / "models")
    panel.toggle_server(wait=True)
    try:
        panel.push(wait=True)
        panel.test_prediction(wait=True)
        assert panel.test["name"] == "tth_other"
        assert png(panel.test_image).startswith(b"\x89PNG")
        panel.url.value = "http://127.0.0.1:9"  # the user types another endpoint
        assert panel.test is None
        assert panel.test_image.layout.display == "none"
        assert panel.test_text.value == ""
        assert panel.model_list.options == ()
        panel.stop_server()  # a server the endpoint no longer names: the box keeps the URL
        assert panel.url.value == "http://127.0.0.1:9"
    finally:
        panel.stop_server()
    # delete() from code deletes at once: no question asked
    panel.toggle_server(wait=True)
    try:
        panel.push(wait=True)
        panel.delete("tth_other", wait=True)
        assert panel.models == []
        assert panel.confirm_box.layout.display == "none"
    finally:
        panel.stop_server()


def test_panel_buttons_never_cut_their_text():
    panel = DeployPanel(None)
    for button in (panel.server_button, panel.test_button, panel.status.show_traceback):
        layout = button.layout
        assert (layout.width, layout.min_width, layout.flex) == ("auto", "fit-content", "0 0 auto")
    assert panel.server_button.description == "Start local server"


def test_training_panel_says_how_to_label_files(tth):
    browser = Browser([*tth[1], *tth[0]])
    browser.wait()
    assert browser.selection.files == {}
    panel = TrainingPanel(browser)
    assert "no labelled files yet: assign classes in the Browser" in panel.source_line.value
    assert "{}" not in panel.source_line.value


def test_deploy_panel_errors(trained):
    panel = DeployPanel(None)
    assert "no trained model yet" in panel.source_line.value
    panel.push_button.click()
    with pytest.raises(ValueError, match="train one first"):
        panel.wait()
    panel.source = trained
    with pytest.raises(ValueError, match="no endpoint"):
        panel.push(wait=True)
    panel.url.value = "http://127.0.0.1:9"  # nothing listens there
    panel.push(wait=False)
    with pytest.raises(mn.tfaas.TFaaSError, match="cannot reach"):
        panel.wait()
    assert panel.status.message == (
        "pushing failed: TFaaSError: cannot reach http://127.0.0.1:9: "
        "connection refused — is the server running?"
    )
    assert panel.status.show_traceback.layout.display == ""


def test_workbench_flows_from_browse_to_deploy(tth, tmp_path):
    bench = Workbench(
        tth,
        browser={"branches": BRANCHES, "max_len": 6},
        training={"epochs": 1},
        deploy={"name": "bench", "model_dir": tmp_path / "models"},
    )
    assert bench.widget.titles == ("1 · Browse", "2 · Train", "3 · Deploy")
    bench.browser.wait()
    assert bench.browser.picked == BRANCHES
    bench.browser.compute_specs(wait=True)
    bench.widget.selected_index = 1
    assert "14 features" in bench.training.source_line.value
    bench.training.train_button.click()
    bench.training.wait()
    assert bench.training.trainer.stream.spec is bench.browser.spec
    bench.widget.selected_index = 2
    assert bench.deploy.trainer is bench.training.trainer
    assert "epochs trained: 1" in bench.deploy.source_line.value
    bench.deploy.toggle_server(wait=True)
    try:
        bench.deploy.push(wait=True)
        assert bench.deploy.models == ["bench"]
        x = next(iter(bench.training.trainer.stream.chunks("validation")))[0][:5]
        served = mn.TFaaSClient(bench.deploy.url.value).predict("bench", x)
        np.testing.assert_allclose(served, bench.training.trainer.predict(x), atol=1e-5)
    finally:
        bench.deploy.stop_server()
    assert Path(tmp_path / "models").is_dir()
