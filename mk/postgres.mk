# PostgreSQL tier: the tests start throwaway PostgreSQL servers of their own (tests/pgserver.py)
# from the Debian server binaries in /usr/lib/postgresql/$(PG_MAJOR)/bin. `make deps` (and so
# `make test`, `make bench`, `make demo`) installs them, with the Makefile's other Debian
# packages, when dpkg says they are missing.
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

APT_PACKAGES += $(PG_PACKAGES)

postgres-server: $(APT_STAMP)
	@if [ "$$(id -u)" = 0 ] && [ ! -x $(PG_BINDIR)/initdb ]; then \
	    echo "error: $(PG_PACKAGES) is installed but $(PG_BINDIR)/initdb is missing" >&2; \
	    exit 1; \
	fi
