# Two commands on a fresh machine with python3 (3.10+): `make demo` (the main job) and `make test` (the suite).
# Each creates ./.venv on first use and installs hf_seg into it with its test extras; nothing else is downloaded.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# full-size and compile checks are marked slow: `make test PYTEST_ARGS=` runs them too; the ones also marked ci (one
# real instance of each slow path: full-size forwards, ONNX, torch.export) run by default
PYTEST_ARGS ?= -m "not slow or ci" --durations=20

.PHONY: install test demo clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# the original CSAIL code is the parity reference of the CSAIL tests; its pinned requirements are not needed
	$(BIN)/python -m pip install --quiet --no-deps mit-semseg==1.0.0
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

demo: install
	$(BIN)/hf-seg demo

clean:
	rm -rf $(VENV) demo_output
