# Packaging and operations: the generated files in contrib/, the Debian tools their tests use,
# and the suite on the oldest dependency versions vfpool declares (make test-floor).

.PHONY: contrib test-floor

# Tools of the contrib tests: systemd-analyze (verify, security), man and groff (the man page).
APT_PACKAGES += systemd man-db groff-base

# Regenerate every generated file in contrib/ from the command tree: the bash completion, the
# man page and the systemd units (for a package's prefix, /usr). Tests fail when one is stale.
contrib: deps
	$(PY) contrib/bash-completion/generate.py
	$(PY) contrib/man/generate.py
	$(VENV)/bin/vfpool contrib systemd --prefix /usr --output-dir contrib/systemd

# The suite on the floors: .venv-floor holds vfpool with every runtime dependency (and the
# libraries the tests use) at exactly the oldest version setup.cfg allows, from the constraints
# tests/packaging/floors.py writes. Rebuilt when setup.cfg changes. Test tools float.
FLOOR_VENV := .venv-floor
FLOOR_STAMP := $(FLOOR_VENV)/.installed

$(FLOOR_STAMP): setup.cfg pyproject.toml tests/packaging/floors.py
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(PYTHON) tests/packaging/floors.py > $(FLOOR_VENV)/constraints.txt
	$(FLOOR_VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(FLOOR_VENV)/bin/python -m pip install -q --disable-pip-version-check \
	    -c $(FLOOR_VENV)/constraints.txt -e '.[dev]'
	$(FLOOR_VENV)/bin/python tests/packaging/floors.py --verify
	touch $@

test-floor: $(APT_STAMP) $(FLOOR_STAMP)
	$(FLOOR_VENV)/bin/python tests/packaging/floors.py --verify
	$(FLOOR_VENV)/bin/python -m pytest -q -n 2

.PHONY: clean-floor
clean-floor:
	rm -rf $(FLOOR_VENV)

clean: clean-floor
