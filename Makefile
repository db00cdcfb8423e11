# vfpool: `make demo` and `make test` are the two commands a new user needs.
# Both are idempotent: they install what is missing (Debian packages, .venv) and nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt-installed
# Debian packages the tests and the demo use. Each is checked with dpkg before apt runs, and
# apt-get update runs once, only when something is missing. mk/*.mk add theirs to the list.
APT_PACKAGES := iproute2 kmod util-linux qemu-system-x86 ipxe-qemu umockdev \
    gir1.2-umockdev-1.0 python3-gi jq pci.ids

.PHONY: all demo test test-fast lint bench deps apt clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

$(APT_STAMP): Makefile $(wildcard mk/*.mk) | $(PY)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    if [ "$$(id -u)" != 0 ]; then echo "error: need root to apt-get install $$missing" >&2; exit 1; fi; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	touch $@

# Byte-compile vfpool as a packaged install would: the editable install leaves that to the
# first import, which does not write it where PYTHONDONTWRITEBYTECODE is set, so every new CLI
# process compiled its modules again (50 ms of a cold `lease acquire` here). Only changed
# modules are compiled again.
deps: $(APT_STAMP) $(STAMP)
	@$(PY) -m compileall -q vfpool

DEMO_HOST := demo-host
demo: deps
	@echo "== a simulated host: dual-port 82599 on NUMA 0, dual-port X710 on NUMA 1"
	$(VENV)/bin/vfpool sim create $(DEMO_HOST) --force
	@echo "== its SR-IOV PFs"
	$(VENV)/bin/vfpool --sim $(DEMO_HOST) pf list
	@echo "== define a pool on both X710 ports (8 VFs each, VLAN 100) and start it"
	$(VENV)/bin/vfpool --sim $(DEMO_HOST) pool define tenant-a --pf enp133s0f0 \
	    --pf enp133s0f1 --vfs 8 --vlan 100 --mode macvtap
	$(VENV)/bin/vfpool --sim $(DEMO_HOST) pool start tenant-a
	$(VENV)/bin/vfpool --sim $(DEMO_HOST) pool show tenant-a
	@echo "== lease two VFs on NUMA node 1 to vm1, then release them"
	$(VENV)/bin/vfpool --sim $(DEMO_HOST) lease acquire tenant-a --owner vm1 --count 2 \
	    --numa-node 1
	$(VENV)/bin/vfpool --sim $(DEMO_HOST) lease list
	$(VENV)/bin/vfpool --sim $(DEMO_HOST) lease release --owner vm1
	@echo "== the QEMU command line a launch of vm2 with two macvtap VFs would run"
	$(VENV)/bin/vfpool --sim $(DEMO_HOST) vm launch --owner vm2 --pool tenant-a --count 2 \
	    --dry-run -- -m 512 -accel tcg
	@echo "== the inventory report"
	$(VENV)/bin/vfpool --sim $(DEMO_HOST) report
	$(VENV)/bin/vfpool --sim $(DEMO_HOST) pf list

# Two workers: the machines have two cores; every test has its own tmp dir, sim and netns.
test: deps
	$(PY) -m pytest -q -n 2

# For iterating: the suite without the real-kernel guest and the PostgreSQL server. It does
# not replace `make test`.
test-fast: deps
	$(PY) -m pytest -q -n 2 -m "not postgresql" --ignore=tests/realkernel

lint: deps
	$(VENV)/bin/ruff check vfpool tests migrations
	$(VENV)/bin/mypy --strict vfpool

bench: deps
	$(PY) -m tests.bench
	$(PY) -m tests.bench_report
	$(PY) -m tests.bench_fleet

clean:
	rm -rf $(VENV) build *.egg-info demo-host

# Tiers with set-up of their own (the real-kernel guest, PostgreSQL, ...) live in mk/*.mk.
-include mk/*.mk
