PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test portability demo docs clean

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The quality tests under 1 and 2 threads and the avx2/default instruction sets, with the spread of every statistic.
portability: $(STAMP)
	PYTHON=$(BIN)/python bash tests/run_portability.sh

# The suite's main job: every registered method against the retrained model on MNIST-5k (report in benchmark_output/).
# One intra-op thread: LeNet-5 batches are too small to gain from more, and it stays fast on a shared CPU.
demo: $(STAMP)
	$(BIN)/lightning-unlearn benchmark --output benchmark_output --threads 1

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site benchmark_output
