# ocibv — two commands: `make run` (set up, then serve) and `make test` (set up, then the suite).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEBIAN_PACKAGES := qemu-img:qemu-utils qemu-nbd:qemu-utils nbdcopy:libnbd-bin nbdinfo:libnbd-bin fio:fio restic:restic borg:borgbackup wrk:wrk

.PHONY: setup run test fuzz lint bench clean debian-packages

setup: $(VENV)/.installed debian-packages

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Debian packages the tests and benchmarks use, installed only when missing (PostgreSQL's
# binaries live off PATH, in /usr/lib/postgresql/<version>/bin).
debian-packages:
	@missing=""; for pair in $(DEBIAN_PACKAGES); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

run: setup
	$(BIN)/ocibv serve

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# Two workers, one module per worker at a time (module-scoped servers are not built twice).
test: setup lint
	$(BIN)/pytest -q -n 2 --dist loadscope

# A longer fuzzing run than `make test` (FUZZ_EXAMPLES examples, default 20000, ~10 min).
FUZZ_EXAMPLES ?= 20000
fuzz: setup
	OCIBV_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q tests/e2e/test_fuzz.py

bench: setup
	$(BIN)/python bench/api.py
	$(BIN)/python bench/backup.py
	$(BIN)/python bench/scale_out.py
	$(BIN)/python bench/nbd.py
	$(BIN)/python bench/nbd_backup.py

clean:
	rm -rf $(VENV) .ocibv .pytest_cache .mypy_cache .ruff_cache
