"""The protocol-neutral Open Inference v2 core (``server.v2``) on real loaded bundles."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from v2_bundles import N, local, rows, write_masked, write_plain

from mlaas4hep_nb.tfaas.errors import RequestError
from mlaas4hep_nb.tfaas.server import v2
from mlaas4hep_nb.tfaas.server.model import ServedModel
from mlaas4hep_nb.tfaas.server.registry import ModelRegistry


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    bundle, keras_model = write_plain(tmp_path_factory.mktemp("v2") / "plain")
    return ServedModel(bundle), keras_model


@pytest.fixture(scope="module")
def masked(tmp_path_factory):
    bundle, keras_model = write_masked(tmp_path_factory.mktemp("v2") / "masked")
    return ServedModel(bundle), keras_model


@contextlib.contextmanager
def refused(status: int, *words: str):
    """Expect a RequestError of ``status`` whose message holds ``words``."""
    with pytest.raises(RequestError) as info:
        yield
    assert info.value.status == status, info.value.message
    for word in words:
        assert word in info.value.message, info.value.message


# --- tensors ----------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", sorted(v2.DATATYPES))
def test_binary_tensors_decode_every_numeric_datatype(datatype):
    dtype = v2.DATATYPES[datatype]
    values = np.arange(12).astype(dtype)
    tensor = v2.tensor_from_bytes("x", datatype, [2, 6], values.tobytes())
    assert tensor.shape == (2, 6)
    assert tensor.data.dtype == dtype
    np.testing.assert_array_equal(tensor.data, values.reshape(2, 6))
    big_endian = values.astype(dtype.newbyteorder(">")).tobytes()
    if dtype.itemsize > 1:  # the wire is little-endian whatever the array was
        assert v2.tensor_from_bytes("x", datatype, [12], big_endian).data[1] != 1


def test_binary_tensor_sizes_are_checked_naming_both_counts():
    raw = np.zeros(7, np.float32).tobytes()
    with refused(400, "'x'", "holds 7 values", "[2, 6] needs 12"):
        v2.tensor_from_bytes("x", "FP32", [2, 6], raw)
    with refused(400, "holds 13 values", "needs 12"):
        v2.tensor_from_bytes("x", "FP32", [2, 6], np.zeros(13, np.float32).tobytes())
    with refused(400, "10 bytes", "FP32", "4 bytes each"):
        v2.tensor_from_bytes("x", "FP32", [2], b"\0" * 10)
    with refused(400, "shape"):
        v2.tensor_from_bytes("x", "FP32", [2, -1], raw)


@pytest.mark.parametrize("datatype", ["BOOL", "BYTES"])
def test_bool_and_bytes_are_refused_naming_the_input(datatype):
    with refused(400, "'flags'", datatype):
        v2.tensor_from_bytes("flags", datatype, [1], b"\1")
    with refused(400, "'flags'", datatype):
        v2.tensor_from_list("flags", datatype, [1], [True])


def test_unknown_datatypes_are_refused_with_the_known_ones():
    with refused(400, "'x'", "'BF16'", "FP32", "UINT64"):
        v2.tensor_from_bytes("x", "BF16", [1], b"\0\0")
    with refused(400, "'x'", "'fp32'"):
        v2.tensor_from_list("x", "fp32", [1], [1.0])


def test_list_tensors_flat_or_nested():
    flat = v2.tensor_from_list("x", "FP32", [2, 3], [1, 2, 3, 4, 5, 6])
    nested = v2.tensor_from_list("x", "FP32", [2, 3], [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(flat.data, nested.data)
    assert flat.data.dtype == np.float32
    assert v2.tensor_from_list("x", "INT64", [2], [1, -(2**62)]).data.dtype == np.int64


def test_list_tensors_refuse_what_would_change_silently():
    with refused(400, "holds 5 values", "[2, 3] needs 6"):
        v2.tensor_from_list("x", "FP32", [2, 3], [1, 2, 3, 4, 5])
    with refused(400, "holds 7 values", "needs 6"):
        v2.tensor_from_list("x", "FP32", [2, 3], [1, 2, 3, 4, 5, 6, 7])
    with refused(400, "INT32", "integers"):
        v2.tensor_from_list("x", "INT32", [2], [1, 2.5])
    with refused(400, "range of INT8"):
        v2.tensor_from_list("x", "INT8", [2], [1, 300])
    with refused(400, "range of UINT16"):
        v2.tensor_from_list("x", "UINT16", [1], [-1])
    with refused(400, "FP16 range"):
        v2.tensor_from_list("x", "FP16", [1], [1e6])
    with refused(400, "FP32 range"):
        v2.tensor_from_list("x", "FP32", [1], [1e300])
    for bad in (["1"], [None], [[1, 2], [3]], [True, False]):
        with refused(400, "'x'", "list of FP32 numbers"):
            v2.tensor_from_list("x", "FP32", [2] if len(bad) == 2 else [1], bad)


# --- a model's rows ---------------------------------------------------------------------


def test_rows_of_every_numeric_datatype_give_the_fp32_answer(plain):
    model, keras_model = plain
    x = np.arange(2 * N).reshape(2, N) % 3
    expected = local(keras_model, x.astype(np.float32))
    for datatype, dtype in v2.DATATYPES.items():
        tensor = v2.tensor_from_bytes("inputs", datatype, [2, N], x.astype(dtype).tobytes())
        rows_, mask = v2.model_rows(model, [tensor])
        assert mask is None
        assert rows_.dtype == np.float32
        np.testing.assert_allclose(model.predict(rows_), expected, atol=1e-5)


def test_one_dimensional_input_is_one_row(plain):
    model, keras_model = plain
    x = rows(1)
    tensor = v2.tensor_from_list("inputs", "FP32", [N], x[0].tolist())
    rows_, _ = v2.model_rows(model, [tensor])
    assert rows_.shape == (1, N)
    np.testing.assert_allclose(model.predict(rows_), local(keras_model, x), atol=1e-5)


def test_fp64_beyond_float32_and_non_finite_values_are_refused(plain):
    model, _ = plain
    big = np.full((1, N), 1e39)
    with refused(400, "'inputs'", "FP32 range"):
        v2.model_rows(model, [v2.tensor_from_bytes("inputs", "FP64", [1, N], big.tobytes())])
    nan = np.full((1, N), np.nan, np.float32)
    with refused(400, "'inputs'", "not finite"):
        v2.model_rows(model, [v2.tensor_from_bytes("inputs", "FP32", [1, N], nan.tobytes())])


def test_input_names_and_shapes_are_checked(plain):
    model, _ = plain
    x = rows(2)

    def tensor(name="inputs", shape=(2, N), data=x):
        return v2.tensor_from_list(name, "FP32", shape, data.ravel().tolist())

    with refused(400, "no input 'input_1'", "['inputs']"):
        v2.model_rows(model, [tensor("input_1")])
    with refused(400, "no input 'mask'"):
        v2.model_rows(model, [tensor(), tensor("mask")])
    with refused(400, "'inputs' is given twice"):
        v2.model_rows(model, [tensor(), tensor()])
    with refused(400, "needs the input 'inputs'"):
        v2.model_rows(model, [])
    with refused(400, "shape [1, 2, 6]", f"[rows, {N}]"):
        v2.model_rows(model, [tensor(shape=(1, 2, N))])
    with refused(400, "4 values per row", f"takes {N}"):
        v2.model_rows(model, [v2.tensor_from_list("inputs", "FP32", [3, 4], x.ravel().tolist())])
    with refused(400, "no values"):
        v2.model_rows(model, [v2.tensor_from_list("inputs", "FP32", [0, N], [])])


def test_the_mask_input_of_a_masked_bundle(masked):
    model, keras_model = masked
    assert v2.model_inputs(model) == ["inputs", "mask"]
    x = rows(4, seed=3)
    mask = np.ones_like(x)
    mask[:, 3:] = 0
    rows_, mask_ = v2.model_rows(
        model,
        [
            v2.tensor_from_bytes("mask", "UINT8", [4, N], mask.astype(np.uint8).tobytes()),
            v2.tensor_from_list("inputs", "FP32", [4, N], x.tolist()),
        ],
    )
    assert mask_ is not None
    assert mask_.dtype == np.float32
    y = model.predict_masked(rows_, mask_)
    np.testing.assert_allclose(y, local(keras_model, x, mask), atol=1e-5)
    assert np.abs(y - local(keras_model, x)).max() > 1e-4  # the mask mattered
    no_mask, none = v2.model_rows(
        model, [v2.tensor_from_list("inputs", "FP32", [4, N], x.tolist())]
    )
    assert none is None
    np.testing.assert_allclose(model.predict(no_mask), local(keras_model, x), atol=1e-5)
    with refused(400, "'mask' has shape [1, 6]", "[4, 6]"):
        v2.model_rows(
            model,
            [
                v2.tensor_from_list("inputs", "FP32", [4, N], x.tolist()),
                v2.tensor_from_list("mask", "FP32", [1, N], mask[0].tolist()),
            ],
        )


# --- outputs, versions, metadata ----------------------------------------------------------


def test_output_names(plain):
    model, _ = plain
    assert v2.output_names(model, None) == [model.output_name]
    assert v2.output_names(model, []) == [model.output_name]
    assert v2.output_names(model, [model.output_name] * 2) == [model.output_name]
    with refused(400, "no output 'bogus'", model.output_name):
        v2.output_names(model, ["bogus"])
    y = np.zeros((3, 1), np.float64)
    (out,) = v2.output_tensors([model.output_name], y)
    assert (out.datatype, out.shape, out.data.dtype) == ("FP32", (3, 1), np.float32)


def test_versions(plain):
    model, _ = plain
    for version in (None, "", "1"):
        v2.check_version(model, version)
    with refused(404, "no version '2'", "['1']"):
        v2.check_version(model, "2")


def test_metadata_and_config_list_exactly_the_inputs_taken(plain, masked):
    model, _ = plain
    meta = v2.model_metadata(model)
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "tensorflow_savedmodel"
    assert meta["inputs"] == [{"name": "inputs", "datatype": "FP32", "shape": [-1, N]}]
    assert meta["outputs"] == [{"name": model.output_name, "datatype": "FP32", "shape": [-1, 1]}]
    config = v2.model_config(model, max_batch_size=64)
    assert config["max_batch_size"] == 64
    assert config["input"] == [
        {"name": "inputs", "data_type": "TYPE_FP32", "dims": [N], "optional": False}
    ]
    assert config["output"] == [{"name": model.output_name, "data_type": "TYPE_FP32", "dims": [1]}]
    masked_model = masked[0]
    names = [tensor["name"] for tensor in v2.model_metadata(masked_model)["inputs"]]
    assert names == ["inputs", "mask"]
    optional = [i["optional"] for i in v2.model_config(masked_model, 64)["input"]]
    assert optional == [False, True]


def test_repository_index(tmp_path):
    write_plain(tmp_path / "good")
    (tmp_path / "broken").mkdir()
    registry = ModelRegistry(tmp_path)
    registry.load_all()
    index = v2.repository_index(registry)
    assert index[1] == {"name": "good", "version": "1", "state": "READY"}
    assert index[0]["name"] == "broken"
    assert index[0]["state"] == "UNAVAILABLE"
    assert "params.json" in index[0]["reason"]
    assert v2.repository_index(registry, ready=True) == [index[1]]
