# One-command set-up: `make book` builds the website, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lstmkit-installed

.PHONY: setup book test lint bench bench-grader clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml tools/install-torch.sh tools/install-compiler.sh | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	bash tools/install-torch.sh $(PY)
	bash tools/install-compiler.sh
	$(PY) -m pip install --quiet -e ".[book,grading,dev]"
	touch $(STAMP)

# Builds lstmkit.torch's CPU kernel once (cached in ~/.cache/lstmkit) and says whether it is used.
setup: $(STAMP)
	$(PY) -m lstmkit._cpu_kernel

book: setup
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book is in _build/html: open _build/html/index.html"

lint: setup
	$(PY) -m ruff check lstmkit tests benchmarks

# nbgrader calls alembic by name, so the venv's bin/ goes first on PATH.
test: setup lint
	bash tools/install-browser.sh
	bash tools/install-postgres.sh
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest --durations=10

bench: setup
	$(PY) benchmarks/bench_reference.py
	$(PY) benchmarks/bench_torch.py

# Grades 200 generated submissions twice (1 and 2 workers) and a few with plain nbgrader: minutes.
bench-grader: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) benchmarks/bench_grader.py

clean:
	rm -rf _build
