# One-command set-up: `make book` builds the website, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lstmkit-installed
# matplotlib's font cache per checkout: a shared ~/.cache/matplotlib can name fonts of a deleted venv.
export MPLCONFIGDIR := $(CURDIR)/$(VENV)/matplotlib

.PHONY: setup book i18n-update i18n-stat test lint bench bench-grader clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml tools/install-torch.sh tools/install-compiler.sh tools/install-sandbox.sh | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	bash tools/install-torch.sh $(PY)
	bash tools/install-compiler.sh
	bash tools/install-sandbox.sh
	$(PY) -m pip install --quiet -e ".[book,grading,dev]"
	touch $(STAMP)

# Builds lstmkit.torch's CPU kernel once (cached in ~/.cache/lstmkit) and says whether it is used.
setup: $(STAMP)
	$(PY) -m lstmkit._cpu_kernel

# English in _build/html, the translations in _build/html/zh_CN and _build/html/zh_TW (chapters executed once).
book: setup
	$(PY) tools/build_book.py

# After changing English text: refresh the catalogs (changed messages become fuzzy), then translate
# book/locales/zh_CN/LC_MESSAGES/*.po, run `$(PY) tools/i18n.py zh-tw` and `make book`.
i18n-update: setup
	$(PY) tools/i18n.py update

i18n-stat: setup
	$(PY) tools/i18n.py stat

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
	find book/locales book/_ext/locales -name '*.mo' -delete
