# Set-up and entry points. `make book` and `make test` do all set-up on a fresh machine.
PROFILE ?= testbed
VENV ?= .venv
PY := $(VENV)/bin/python
SB := $(VENV)/bin/semantic-bottleneck
STAMP := $(VENV)/.installed
# extra arguments for `make section`, e.g. P="-p train_steps 500"
NB ?=
P ?=

# let Python keep the compiled package modules between the many kernels and processes
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install book html pdf section test lint format inputs bench clean

# --no-compile: Python compiles a module when it is first imported, instead of pip compiling every
# file of torch and the rest at install time
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q --no-compile -e ".[book,eval,dev]"
	touch $(STAMP)

install: $(STAMP)

# Execute every notebook of the profile with papermill into book/generated/, then build the HTML
# with -W (a missing or failed page fails the build). Output: _build/html/index.html
book: $(STAMP)
	$(SB) book all --profile $(PROFILE)

# Build the HTML from the pages already in book/generated/.
html: $(STAMP)
	$(SB) book build

# Print the built HTML (make book first) to one PDF with headless chromium: _build/pdf/book.pdf
pdf: $(STAMP) _build/html/index.html
	$(SB) book pdf

_build/html/index.html:
	@echo "no built book in _build/html: run 'make book' first" >&2; exit 2

# Rerun one section with other parameters, then rebuild: make section NB=tab01-statistics P="-p train_steps 500"
section: $(STAMP)
	test -n "$(NB)" || (echo "usage: make section NB=<notebook name> [P='-p KEY VALUE ...']" && exit 2)
	$(SB) book run --profile $(PROFILE) --only $(NB) $(P)
	$(SB) book build

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests notebooks benchmarks scripts
	$(VENV)/bin/ruff format --check src tests notebooks benchmarks scripts

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests notebooks benchmarks scripts
	$(VENV)/bin/ruff format src tests notebooks benchmarks scripts

# Lint, unit tests, every notebook with tiny parameters, a full book build and the browser check,
# on two workers (a test file stays on one worker, so its module fixtures are built once).
test: lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -n 2 --dist loadfile

# Which paper-profile inputs are present, and the command that fetches each missing one.
inputs: $(STAMP)
	$(SB) inputs

bench: $(STAMP)
	$(PY) benchmarks/bench_conditioning.py

clean:
	rm -rf _build book/generated
