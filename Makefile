# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast test-stress bench ci-gate clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the local CPU wheel: any other torch request pulls CUDA builds.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/innerdpo demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The dashboard tests three times and the worker's end-to-end tests once, with every core kept busy by a bounded
# CPU hog: they must wait for the state they assert, never for time. (The worker's three end-to-end tests are 3.5
# minutes of real subprocess work under the hog; one pass keeps .ci/run under 30 minutes.)
STRESS_TESTS ?= tests/test_tui_runs.py tests/test_tui_queue.py tests/test_tui_detail.py tests/test_tui_snapshots.py \
	tests/test_tui_data.py tests/test_tui_broken.py tests/test_tui_e2e.py
STRESS_ONCE ?= tests/test_worker_e2e.py
test-stress: $(STAMP)
	$(BIN)/python tests/cpu_hog.py --repeat 3 -- $(BIN)/python -m pytest -q -p no:cacheprovider $(STRESS_TESTS)
	$(BIN)/python tests/cpu_hog.py --repeat 1 -- $(BIN)/python -m pytest -q -p no:cacheprovider $(STRESS_ONCE)

# The project's own evaluation gate, as a lab's CI would run it: a short tiny-random adapter against the
# base model on the mini suite. Reports (JUnit XML, markdown summary) are kept in ci-reports/.
ci-gate: $(STAMP)
	rm -rf ci-reports && mkdir -p ci-reports
	$(BIN)/innerdpo train hs-none-InnerDPO --base-model tiny-random --dataset mini:train --max-rows 64 \
		--max-steps 5 --learning-rate 1e-3 --output-dir ci-reports/adapter-run --quiet
	$(BIN)/innerdpo eval tiny-random --suite mini --limit 64 --output ci-reports/base-eval.json --json > /dev/null
	$(BIN)/innerdpo gate ci-reports/adapter-run --suite mini --limit 64 --baseline ci-reports/base-eval.json \
		--min all=0.2 --max-drop all=0.05 --junit ci-reports/gate-junit.xml --markdown ci-reports/gate-summary.md
	cat ci-reports/gate-summary.md

bench: $(STAMP)
	$(BIN)/python -m bench.train_step
	$(BIN)/python -m bench.eval_throughput

clean:
	rm -rf $(VENV) build *.egg-info
