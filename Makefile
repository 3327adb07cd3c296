# Two commands do all the setup: `make demo` and `make test` (each creates .venv/ if needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_run
DEMO_DATA := $(DEMO_DIR)/data

.PHONY: test demo images flags layout clean-demo

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-test.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile tests

demo: $(STAMP)
	bash dataset/run_demo.sh $(PY) $(DEMO_DIR)

images: $(STAMP)
	bash dataset/run_demo.sh $(PY) $(DEMO_DIR) --images-only

# docs/flags.md: every script's --help, verbatim (tests/test_docs_readme.py checks it).
flags: $(STAMP)
	$(PY) docs/flags.py

# docs/layout.md's package map: the subpackages' docstrings (tests/test_package_layers.py checks it).
layout: $(STAMP)
	$(PY) docs/layout.py

clean-demo:
	rm -rf $(DEMO_DIR)
