# Two commands matter on a fresh machine: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)
export NFT_PIPELINE_DATA ?= $(CURDIR)/data
export NFT_PIPELINE_DAGSTER_STORAGE ?= $(NFT_PIPELINE_DATA)/dagster

.PHONY: install demo test test-setup dev gateway clean

# torch is pinned first so pip takes the CPU build that lies on local disk; an unpinned torch
# would pull a multi-GB CUDA build. GPU users: install your torch build, then `pip install -e .`.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	mkdir -p $(NFT_PIPELINE_DAGSTER_STORAGE)
	$(BIN)/nft-pipeline demo

# Chromium, PostgreSQL (apt, as root) and dagster-postgres for the UI and production-instance tests.
test-setup: $(STAMP)
	scripts/test-setup.sh $(BIN)/python

test: $(STAMP) test-setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The Dagster UI on http://127.0.0.1:3000 with the sample gateway on port 8765.
dev: $(STAMP)
	mkdir -p $(NFT_PIPELINE_DAGSTER_STORAGE)
	$(BIN)/nft-pipeline gateway --port 8765 & trap "kill $$!" EXIT; \
	NFT_PIPELINE_GATEWAY_URL=http://127.0.0.1:8765 $(BIN)/dagster dev -h 127.0.0.1 -p 3000

gateway: $(STAMP)
	$(BIN)/nft-pipeline gateway --port 8765

clean:
	rm -rf $(NFT_PIPELINE_DATA)
