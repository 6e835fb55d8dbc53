# ocibv — two commands: `make run` (set up, then serve) and `make test` (set up, then the suite).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEBIAN_PACKAGES := qemu-img:qemu-utils nbdcopy:libnbd-bin restic:restic borg:borgbackup

.PHONY: setup run test lint bench clean debian-packages

setup: $(VENV)/.installed debian-packages

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Debian packages the tests and benchmarks use, installed only when missing.
debian-packages:
	@missing=""; for pair in $(DEBIAN_PACKAGES); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
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

bench: setup
	$(BIN)/python bench/api.py
	$(BIN)/python bench/backup.py

clean:
	rm -rf $(VENV) .ocibv .pytest_cache .mypy_cache .ruff_cache
