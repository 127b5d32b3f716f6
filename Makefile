# mailbot — every set-up step is here; the README's two commands call it.
PY       ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
CONFIG   ?= config.toml

.PHONY: run test test-fast setup deps-system lint docs install wheel bench chaos clean

# The wheels of every dependency are fetched once into $(VENV)/wheels, then installed from
# there: tests/test_install.py's `make install` takes them from there too (PIP_ARGS), offline.
$(BIN)/mailbot: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip wheel -q -w $(VENV)/wheels '.[test]' 'setuptools>=68'
	$(BIN)/pip install -q --no-index --find-links $(VENV)/wheels -e '.[test]'
	@touch $@

setup: $(BIN)/mailbot

# Debian packages the tests need (a real Dovecot IMAP server; a real Postfix in front of mailbot;
# Chromium and its driver for the web side's browser journeys, tests/test_browser.py; faketime, to start `mailbot`
# processes at a scenario's date in tests/procedures).
deps-system:
	@need=""; \
	command -v dovecot >/dev/null 2>&1 || need="$$need dovecot-imapd dovecot-lmtpd"; \
	command -v systemd-analyze >/dev/null 2>&1 || need="$$need systemd"; \
	command -v openssl >/dev/null 2>&1 || need="$$need openssl"; \
	[ -x /usr/sbin/postfix ] || need="$$need postfix"; \
	[ -x /usr/bin/chromium ] || need="$$need chromium"; \
	[ -x /usr/bin/chromedriver ] || need="$$need chromium-driver"; \
	command -v faketime >/dev/null 2>&1 || need="$$need faketime"; \
	ldconfig -p | grep -q libpangoft2-1.0 || need="$$need libpango-1.0-0 libpangoft2-1.0-0"; \
	if [ -n "$$need" ]; then \
	  echo "installing Debian packages:$$need"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	fi

run: setup var/secret
	$(BIN)/mailbot --config $(CONFIG) run

# The token secret of the shipped config (`[security] secret_file`), made once, readable by
# its owner only. Production sets its own (docs/operations.md); there is no built-in key.
var/secret:
	@mkdir -p var
	@umask 077 && $(PY) -c "import secrets; print(secrets.token_hex(32))" > $@.tmp && mv $@.tmp $@
	@echo "created $@ (the HMAC key of agent tokens; keep it with the backups)"

test: setup deps-system
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The inner loop, under a minute on 2 cores: no Dovecot, Postfix or PostgreSQL, no processes,
# corpora, long generated runs or PDFs (markers `servers` and `slow`, tests/conftest.py), on
# every core (pytest-xdist); a test over 3 s of CPU fails here and asks for `slow`. CI runs `make test`.
# Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set: without it every run compiles
# and assertion-rewrites the tests and the package again (~10 s of the minute, bench/README.md).
test-fast: setup
	PYTHONDONTWRITEBYTECODE= MAILBOT_TEST_FAST=1 $(BIN)/python -m pytest -q -m "not slow and not servers" -p no:cacheprovider \
	  -n auto $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check mailbot tests bench

# Production install (docs/operations.md §1): a virtualenv at PREFIX with mailbot and its
# runtime dependencies only (no test tools), then the config, templates, secrets and units
# (mailbot/ops/install.py: never overwrites an edited config, templates or secret).
PREFIX   ?= /opt/mailbot
ETCDIR   ?= /etc/mailbot
UNITDIR  ?= /etc/systemd/system
STATEDIR ?= /var/lib/mailbot
# PIP_ARGS: where pip takes the dependencies, e.g. "--no-index --find-links /srv/wheels" on a
# server without the package index (wheels made by `pip wheel -w /srv/wheels . 'setuptools>=68'`).
PIP_ARGS ?=
install:
	$(PY) -m venv $(PREFIX)
	$(PREFIX)/bin/pip install -q $(PIP_ARGS) .
	$(PREFIX)/bin/python -m mailbot.ops.install --source . --prefix $(PREFIX) --etc $(ETCDIR) \
	  --units $(UNITDIR) --state $(STATEDIR)

# A wheel of mailbot alone, in dist/ (pip installs its dependencies from the index).
wheel:
	$(PY) -m pip wheel -q --no-deps -w dist .

# Generated documentation: docs/configuration.md from the config schema (mailbot/config.py).
# Run it after adding or changing a config key; tests/test_configdoc.py fails when it is stale.
docs: setup
	$(BIN)/python -m mailbot.ops.configdoc

bench: setup deps-system
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/ingest.py --db pg --instances 3
	$(BIN)/python bench/smtp.py
	$(BIN)/python bench/smtp.py --concurrency 100
	$(BIN)/python bench/imap.py --n 5000
	$(BIN)/python bench/write.py
	$(BIN)/python bench/outbox.py
	$(BIN)/python bench/sla.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/peer.py --n 500

# Chaos run (issue 8): N mails over SMTP and IMAP while `mailbot run` is SIGKILLed
# at random moments and restarted; prints `N sent, N recorded, 0 lost, 0 duplicated`.
N        ?= 2000
CHAOS_ARGS ?=
chaos: setup deps-system
	$(BIN)/python -m tests.chaos --n $(N) $(CHAOS_ARGS)

clean:
	rm -rf var .pytest_cache build dist
