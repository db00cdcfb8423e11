# PostgreSQL tier: the tests start throwaway PostgreSQL servers of their own (tests/pgserver.py)
# from the Debian server binaries in /usr/lib/postgresql/$(PG_MAJOR)/bin. `make deps` (and so
# `make test`, `make bench`, `make demo`) installs them when dpkg says they are missing.
#
# Only postgresql-$(PG_MAJOR) is needed (initdb, postgres; psycopg speaks the protocol itself).
# On a machine without it, Debian's postinst also creates and starts a "main" cluster on
# port 5432; the tests never use it (their servers listen on a unix socket in a temporary
# directory, and on no TCP port).
PG_MAJOR := 15
PG_PACKAGES := postgresql-$(PG_MAJOR)
PG_BINDIR := /usr/lib/postgresql/$(PG_MAJOR)/bin

.PHONY: postgres-server

deps: postgres-server

# Checked on every run (dpkg-query is cheap), so a package removed later is put back; after
# the main APT rule, so that two apt-get never run at once under make -j.
postgres-server: | $(APT_STAMP)
	@missing=$$(for p in $(PG_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages for the PostgreSQL tests: $$missing"; \
	    if [ "$$(id -u)" != 0 ]; then \
	        echo "warning: need root to apt-get install $$missing; the PostgreSQL tests will" \
	             "skip" >&2; exit 0; \
	    fi; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        $$missing >/dev/null; \
	fi; \
	if [ "$$(id -u)" = 0 ] && [ ! -x $(PG_BINDIR)/initdb ]; then \
	    echo "error: $(PG_PACKAGES) is installed but $(PG_BINDIR)/initdb is missing" >&2; \
	    exit 1; \
	fi
