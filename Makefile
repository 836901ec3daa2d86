# Two commands matter on a fresh machine: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)
export NFT_PIPELINE_DATA ?= $(CURDIR)/data
export NFT_PIPELINE_DAGSTER_STORAGE ?= $(NFT_PIPELINE_DATA)/dagster

.PHONY: install lock demo test test-setup dev gateway clean

# The whole environment, pinned: constraints.txt (written by `make lock`) holds one version of
# every package that any extra needs, so two fresh machines install the same set. It only pins
# versions and adds no package. torch is installed first, alone: pip then takes the CPU build
# that lies on local disk (a 2.13.0+cpu wheel satisfies ==2.13.0) and never a CUDA build with its
# nvidia-* wheels. GPU users: install your torch build, then `pip install -c constraints.txt -e .`.
TORCH       := 2.13.0
EXTRAS      := test,deploy,bench
CONSTRAINTS := constraints.txt

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) torch==$(TORCH)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

# Rewrites constraints.txt from pyproject.toml: `make lock` keeps the current pins and only adds or
# drops what pyproject.toml changed; `make lock UPGRADE=1` moves every pin forward to the newest
# releases that satisfy it (the dagster family stays one release train: its ranges name the train).
# Then `make test` checks the new set. uv resolves for Python 3.11 on linux x86_64 from PyPI, with
# torch held at $(TORCH), from a throwaway virtualenv outside the repo. The CUDA-only packages that
# PyPI's torch wheel lists (nvidia-*, cuda-*, triton) are left out: the CPU build needs none.
LOCK_TOOLS := $(or $(TMPDIR),/tmp)/nft-pipeline-lock-tools
UV_VERSION := 0.13.9
lock:
	test -x $(LOCK_TOOLS)/bin/uv || \
		{ $(PYTHON) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install --quiet uv==$(UV_VERSION); }
	echo torch==$(TORCH) > $(LOCK_TOOLS)/torch.txt
	[ ! -f $(CONSTRAINTS) ] || cp $(CONSTRAINTS) $(LOCK_TOOLS)/all.txt  # uv keeps the pins it finds in its output file
	$(LOCK_TOOLS)/bin/uv pip compile pyproject.toml --all-extras $(if $(UPGRADE),--upgrade) --quiet \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		-c $(LOCK_TOOLS)/torch.txt --custom-compile-command 'make lock' -o $(LOCK_TOOLS)/all.txt
	awk '/^[a-z0-9]/ { cuda = /^(nvidia-|cuda-|triton==)/ } !cuda' $(LOCK_TOOLS)/all.txt > $(CONSTRAINTS)
	@grep -E '^(dagster|torch)' $(CONSTRAINTS)

demo: $(STAMP)
	mkdir -p $(NFT_PIPELINE_DAGSTER_STORAGE)
	$(BIN)/nft-pipeline demo

# Chromium and PostgreSQL (apt, as root) for the UI and production-instance tests.
test-setup:
	scripts/test-setup.sh

# -rs lists every skip with its reason; under CI=true a skip is a failure (tests/components.py).
# pytest's exit code 5 means it collected no tests: a failure, said in words.
test: $(STAMP) test-setup
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS) || \
		{ code=$$?; [ $$code != 5 ] || echo "pytest collected no tests" >&2; exit $$code; }

# The Dagster UI on http://127.0.0.1:3000 with the sample gateway on port 8765.
dev: $(STAMP)
	mkdir -p $(NFT_PIPELINE_DAGSTER_STORAGE)
	$(BIN)/nft-pipeline gateway --port 8765 & trap "kill $$!" EXIT; \
	NFT_PIPELINE_GATEWAY_URL=http://127.0.0.1:8765 $(BIN)/dagster dev -h 127.0.0.1 -p 3000

gateway: $(STAMP)
	$(BIN)/nft-pipeline gateway --port 8765

clean:
	rm -rf $(NFT_PIPELINE_DATA)
