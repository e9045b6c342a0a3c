# The whole set-up: `make test` or `make demo` builds .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lab bench results clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --durations=10 tests

demo: $(STAMP)
	$(PY) -m lion_kit demo --out runs/demo

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

bench: $(STAMP)
	$(PY) -m lion_kit bench render
	$(PY) -m lion_kit bench speed --json runs/bench_speed.json

CURVE_CELLS := --variants supervised,fixmatch,lion,lion-no-ld --budgets 400 --seeds 0,1,2 --split-seeds ""

# after cells land in results/: each grid's table.md and figures, the README's and docs/experiments.md's
# tables, the budget curve, docs/experiments.md's run tables
results: $(STAMP)
	$(PY) -m lion_kit results table >/dev/null
	$(PY) -m lion_kit results table --readme README.md --write >/dev/null
	$(PY) -m lion_kit results table --readme docs/experiments.md --write >/dev/null
	$(PY) -m lion_kit results budget >/dev/null
	$(PY) -m lion_kit results table --keep results/synthfer-cpu-2x --set iters=300 $(CURVE_CELLS) >/dev/null
	$(PY) -m lion_kit results table --keep results/synthfer-cpu-4x --set iters=600 $(CURVE_CELLS) >/dev/null
	$(PY) -m lion_kit results table --keep results/synthfer-cpu-8x --set iters=1200 $(CURVE_CELLS) >/dev/null
	$(PY) -m lion_kit results table --keep results/synthfer-cpu-noise30 --set label_noise=0.3 $(CURVE_CELLS) >/dev/null
	$(PY) -m lion_kit results table --keep results/synthfer-cpu-bf16 --set bf16=true --set channels_last=true >/dev/null
	$(PY) -m lion_kit results table --keep results/synthfer-paper-visits --preset paper-visits --set bf16=true --set channels_last=true >/dev/null
	$(PY) -c "from lion_kit.report import refresh_runs_blocks; refresh_runs_blocks('docs/experiments.md')"

clean:
	rm -rf $(VENV) runs
