# Packaging and operations: the generated files in contrib/, the Debian tools their tests use,
# and the suite on the oldest dependency versions vfpool declares (make test-floor).

.PHONY: contrib test-floor

# Tools of the contrib tests: systemd-analyze (verify, security), man and groff (the man page),
# bash-completion's own scripts are not needed. Checked with dpkg, as the Makefile does.
OPS_APT_PACKAGES := systemd man-db groff-base
OPS_APT_STAMP := $(VENV)/.apt-ops-installed

$(OPS_APT_STAMP): mk/ops.mk | $(PY)
	@missing=$$(for p in $(OPS_APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    if [ "$$(id -u)" != 0 ]; then echo "error: need root to apt-get install $$missing" >&2; exit 1; fi; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	touch $@

deps: $(OPS_APT_STAMP)

# Regenerate every generated file in contrib/ from the command tree: the bash completion, the
# man page and the systemd units (for a package's prefix, /usr). Tests fail when one is stale.
contrib: deps
	$(PY) contrib/bash-completion/generate.py
	$(PY) contrib/man/generate.py
	$(VENV)/bin/vfpool contrib systemd --prefix /usr --output-dir contrib/systemd
