# Every target creates .venv when it is missing, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench lint fmt clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m tests.bench

lint: $(STAMP)
	$(VENV)/bin/ruff check fabnode drivers simulators demo tests
	$(VENV)/bin/mypy
	PYTHONPATH=. $(VENV)/bin/lint-imports

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix fabnode drivers simulators demo tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Raspberry Pi service: `sudo make install`, `sudo make uninstall` (PURGE=1 also removes /etc/fabnode and
# the usage log). DESTDIR=/tmp/x installs into a folder, printing the system commands it skips;
# INSTALL_FLAGS passes more options (scripts/install-pi.sh --help). Guide: README.md.
.PHONY: install uninstall

install:
	DESTDIR="$(DESTDIR)" bash scripts/install-pi.sh $(INSTALL_FLAGS)

uninstall:
	DESTDIR="$(DESTDIR)" bash scripts/install-pi.sh --uninstall $(if $(PURGE),--purge) $(INSTALL_FLAGS)
