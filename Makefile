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

# The suite's main job: every registered method against the retrained model on MNIST-5k (report in benchmark_output/),
# over 3 replicate seeds (mean ± 95% CI), in 2 worker processes of one intra-op thread each, each taking one scenario
# of one seed at a time (LeNet-5 batches are too small to gain from more threads). About 4.5 minutes on 2 idle cores.
# Re-running resumes an interrupted run of the same code and options.
demo: $(STAMP)
	$(BIN)/lightning-unlearn benchmark --output benchmark_output --seeds '[0,1,2]' --workers 2 --threads 1

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site benchmark_output
