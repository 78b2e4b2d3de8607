# The two commands users need: `make demo` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when the dependency list changes; a second `make install` is a no-op.
# The dev venv's ONNX Runtime is onnxruntime-gpu from the export extra (it runs on CPU too); serve-cpu/serve-gpu
# are for the images only: onnxruntime and onnxruntime-gpu must never share one environment.
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: install install-python install-system test lint demo clean

install: install-python install-system

install-python: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,export,serve,demo,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# Tools the tests run for real: promtool/prometheus (Debian), TypeScript + @grafana/schema (npm).
install-system:
	./scripts/install-system-deps.sh

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install-python
	$(BIN)/ruff check .

demo: install-python
	$(BIN)/sentiwatch demo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
