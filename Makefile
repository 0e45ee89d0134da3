# The two commands a newcomer needs are `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install browser run test lint bench clean

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(BIN)/.installed

# End-to-end tests drive Chromium: the system one where present, else Playwright's own.
browser: install
	@if [ -x /usr/bin/chromium ]; then echo "Using the system Chromium (/usr/bin/chromium)"; \
	else $(BIN)/python -m playwright install chromium; fi

run: install
	$(BIN)/python -m playground.serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint browser
	$(BIN)/python -m pytest -n 2 --dist loadgroup

bench: install
	$(BIN)/python bench/engine.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
