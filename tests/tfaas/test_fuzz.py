"""Fuzz every route of the OpenAPI schema with schemathesis: no input may cause a 5xx."""

from __future__ import annotations

import keras
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

import mlaas4hep_nb as mn
from mlaas4hep_nb.bundle import write_bundle
from mlaas4hep_nb.tfaas.server.openapi import openapi_schema

schema = schemathesis.openapi.from_dict(openapi_schema("test"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with one model, named as the fuzzer most likely names one."""
    inputs = keras.Input((3,), name="inputs")
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    bundle = write_bundle(model, tmp_path_factory.mktemp("fuzz") / "0", features=["a", "b", "c"])
    with mn.tfaas.serve_in_background(tmp_path_factory.mktemp("served"), max_upload=1 << 20) as h:
        mn.TFaaSClient(h.url).upload(bundle, name="0")
        yield h


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_route_answers_5xx(case, server):
    response = case.call(base_url=server.url, timeout=30)
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    if response.status_code >= 400 and response.status_code != 405:
        assert "error" in response.json()
    assert server.running
