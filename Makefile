# mailbot — every set-up step is here; the README's two commands call it.
PY       ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
CONFIG   ?= config.toml

.PHONY: run test setup deps-system lint bench clean

$(BIN)/mailbot: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

setup: $(BIN)/mailbot

# Debian packages the tests need (a real Dovecot IMAP server).
deps-system:
	@if ! command -v dovecot >/dev/null 2>&1; then \
	  echo "installing dovecot-imapd (Debian)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd dovecot-lmtpd >/dev/null; \
	fi

run: setup
	mkdir -p var
	$(BIN)/mailbot --config $(CONFIG) run

test: setup deps-system
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check mailbot tests bench

bench: setup
	$(BIN)/python bench/ingest.py

clean:
	rm -rf var .pytest_cache
