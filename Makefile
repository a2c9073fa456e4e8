# lmpipe: two commands do all the set-up on a fresh machine.
#   make demo   - create .venv if missing, then run the whole pipeline on the bundled sample corpus:
#                 curate -> tokenize -> continue pretraining all-MiniLM-L6-v2 (2 Ray workers) -> GLUE (SST-2, STS-B)
#                 -> promote
#   make test   - create .venv if missing, then run the default test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lmpipe-installed
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false RAY_USAGE_STATS_ENABLED=0

.PHONY: venv demo test test-all bench clean services services-down serve gc

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(OFFLINE) $(BIN)/lmpipe pipeline data_specs/pipeline/sample.yaml

test: $(STAMP)
	@set +e; $(OFFLINE) $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

test-all: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

bench: $(STAMP)
	$(OFFLINE) $(BIN)/python benchmarks/bench_curate.py
	$(OFFLINE) $(BIN)/python benchmarks/bench_minhash.py
	$(OFFLINE) $(BIN)/python benchmarks/bench_dedup_quality.py
	$(OFFLINE) $(BIN)/python benchmarks/bench_tokenizer.py
	$(OFFLINE) $(BIN)/python benchmarks/bench_train.py
	$(OFFLINE) $(BIN)/python benchmarks/bench_glue.py
	$(OFFLINE) $(BIN)/python benchmarks/bench_pipeline.py

# Local Prefect (:4200) + MLflow (:5000) servers in the background, state in .lmpipe/services/ or
# $LMPIPE_STATE_DIR/services/ (= lmpipe services up).
# Other ports: make services SERVICES_ARGS="--prefect-port 4300 --mlflow-port 5100"
services: $(STAMP)
	$(OFFLINE) $(BIN)/python -m flows.services up $(SERVICES_ARGS)

services-down:
	$(BIN)/python -m flows.services down

# A registered model over REST on 127.0.0.1 (MLflow's scoring server, in-process): make serve MODEL=models:/x@champion
# Other port or host: make serve MODEL=... SERVE_ARGS="--port 5002"
serve: $(STAMP)
	@test -n "$(MODEL)" || { echo "usage: make serve MODEL=models:/<name>@<alias> [SERVE_ARGS='--port 5002']"; exit 2; }
	$(OFFLINE) $(BIN)/lmpipe serve "$(MODEL)" $(SERVE_ARGS)

# Old finished runs' checkpoints and models (keeps the newest 3 per kind and every registered one):
# make gc GC_ARGS="--dry-run"   or   GC_ARGS="--keep 5 --root out/sample-tokens-minilm/runs"
gc: $(STAMP)
	$(OFFLINE) $(BIN)/lmpipe gc $(GC_ARGS)

clean:
	rm -rf out .pytest_cache
