# Two commands matter: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-fast install lint repro perf benchmark evaluate-seeds clean

# Reinstall whenever pyproject.toml changes; the stamp file records the last install.
# uv installs in under half a minute where pip takes over three. It does not read pip's
# configuration, so the wheel folders pip is told about (PIP_FIND_LINKS or pip.conf) are
# passed on: that is where this machine keeps the CPU build of torch. If uv cannot be had,
# or fails (it does not read pip's extra indexes either), pip installs instead; it resolves
# on its own, so a few indirect dependencies may differ (e.g. celery, python-dateutil).
# Recursive variables: pip's configuration is only read when an install runs.
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
PIP_INSTALL = $(BIN)/python -m pip install --quiet --disable-pip-version-check
UV_INSTALL  = $(BIN)/uv pip install --quiet --python $(BIN)/python \
              $(foreach links,$(FIND_LINKS),--find-links $(links))
$(VENV)/.installed: pyproject.toml router_model/decide/_planner.pyx
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP_INSTALL) uv 2>/dev/null && $(UV_INSTALL) -e '.[dev,embed,litellm,otel]' \
	 || { echo "uv unavailable or failed; installing with pip"; $(PIP_INSTALL) -e '.[dev,embed,litellm,otel]'; }
	@touch $@

install: $(VENV)/.installed

# The demo evaluates the model it has just trained, published or not: on the one world the
# model ties its lookup table (README, "Can a router learn from this gate?"), so router-train's
# publish gate would keep it a candidate and leave router-evaluate nothing (or an old model).
DEMO_TRAIN := train.publish_if_worse=true
demo: install  ## simulate logs, train, evaluate; then generate the example courses
	$(BIN)/router-simulate
	$(BIN)/router-train $(DEMO_TRAIN)
	$(BIN)/router-evaluate
	@export PROVIDER_SIM_API_KEY=$${PROVIDER_SIM_API_KEY:-sim-local}; \
	$(BIN)/course-provider-sim provider_sim.port=8090 & sim=$$!; trap "kill $$sim" EXIT; \
	for i in $$(seq 90); do $(BIN)/python -c "import httpx; \
	  httpx.get('http://127.0.0.1:8090/healthz')" 2>/dev/null && break; sleep 1; done; \
	$(BIN)/course-generate data/examples/ generate.compare_with_rules=true provider.cache=true \
	  generate.fresh=true

# Tests run on every core (pytest-xdist); the two generator loops share a worker, so the
# second reuses the first's MiniLM vectors. OpenMP threads sleep instead of spinning while
# they wait, or LightGBM in one worker stalls behind the other worker's threads.
PYTEST_PARALLEL ?= -n auto --dist loadgroup
PYTEST := OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest $(PYTEST_PARALLEL)
test: install  ## the whole test suite (real files, servers and models), on every core
	$(PYTEST)

test-fast: install  ## the suite without the tests marked slow (training, servers, benchmarks)
	$(PYTEST) -m "not slow"

lint: install
	$(BIN)/ruff check .

repro: install  ## rebuild the DVC pipeline (only stages whose inputs changed)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

PERF_ARGS ?=
perf: install  ## issue 14's speed table: ratios to bare baselines, never asserts; reports/perf.json
	@test -f artifacts/router/LATEST || { echo "make perf: no trained router in artifacts/router;" \
	  "simulating the default logs and training one first (as make demo does)"; \
	  $(BIN)/router-simulate && $(BIN)/router-train $(DEMO_TRAIN); }
	$(BIN)/python perf/report.py $(PERF_ARGS)

evaluate-seeds: install  ## simulate -> train -> evaluate over 5 seeds x 5 worlds (about 10 min on 2 cores)
	$(BIN)/router-evaluate-seeds

benchmark: install  ## routers on the public outcome tables in ../shared (minutes; cached)
	$(BIN)/router-benchmark

clean:
	rm -rf data/generated artifacts reports .cache
