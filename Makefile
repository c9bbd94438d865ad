# Two commands on a fresh machine with Python >= 3.10:  make demo  and  make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lab lint bench venv clean protos

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || \
		($(PYTHON) -m pip install --user -q virtualenv && $(PYTHON) -m virtualenv $(VENV))
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,dask]"
# TF Serving's client, for the gRPC tests: its "tensorflow" requirement would replace tensorflow-cpu
	$(BIN)/python -m pip install -q --no-deps "tensorflow-serving-api>=2.16"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mlaas4hep-nb demo --out demo-output

test: $(STAMP)
	bash scripts/install-system-deps.sh
	$(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# mypy checks what [tool.mypy] in pyproject.toml names, as strictly as it says
lint: $(STAMP)
	$(BIN)/ruff check mlaas4hep_nb tests benchmarks
	$(BIN)/ruff format --check mlaas4hep_nb tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	bash scripts/install-system-deps.sh bench
	$(BIN)/python benchmarks/bench_stream.py
	$(BIN)/python benchmarks/bench_train.py --repeat 3
	$(BIN)/python benchmarks/bench_serve.py --seconds 10
	$(BIN)/python benchmarks/bench_scale.py

# the generated modules of mlaas4hep_nb/tfaas/server/protos, from their .proto files
protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) demo-output test-artifacts .pytest_cache .mypy_cache
