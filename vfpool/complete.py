"""Pool names and lease ids for shell completion, read with the stdlib's sqlite3 only.

    python -m vfpool.complete pools|leases [--sim DIR] [--db URL]

prints one name per line. The bash completion (contrib/bash-completion/vfpool) runs it on every
<TAB> that completes a pool or a lease, so it must start fast: it imports neither SQLAlchemy
nor the rest of vfpool. It finds the store as the CLI does (``--db``, ``VFPOOL_DB``, then the
default for ``--sim``/``VFPOOL_SIM``, root or the user) and opens it read-only: a missing store,
another database than SQLite, an old schema or a locked file prints nothing and exits 0.

The SQL lives in QUERIES below, the one place to change when the schema does.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from urllib.parse import quote, unquote

# What completes, by kind: each query returns one column of names, in order.
QUERIES = {
    "pools": "SELECT name FROM pools ORDER BY name",
    "leases": "SELECT id FROM leases WHERE state IN ('reserved', 'active') ORDER BY id",
}
DB_FILENAME = "vfpool.db"  # as vfpool.store.engine, which a test compares with this module


def default_store(sim: str | None) -> Path:
    """The store used without --db, as vfpool.store.default_db_url() picks it."""
    if sim:
        return Path(sim).absolute() / DB_FILENAME
    if os.geteuid() == 0:
        return Path("/var/lib/vfpool") / DB_FILENAME
    state_home = os.environ.get("XDG_STATE_HOME", "")
    base = Path(state_home) if os.path.isabs(state_home) else Path.home() / ".local" / "state"
    return base / "vfpool" / DB_FILENAME


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (the driver may be named); None for anything
    else: another database, or SQLite in memory."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] != "sqlite" or not rest.startswith("/"):
        return None
    path = unquote(rest[1:].split("?")[0])
    return Path(path) if path and path != ":memory:" else None


def store_path(sim: str | None, db: str | None) -> Path | None:
    sim = sim or os.environ.get("VFPOOL_SIM") or None
    db = db or os.environ.get("VFPOOL_DB") or None
    return sqlite_path(db) if db else default_store(sim)


def names(kind: str, path: Path) -> list[str]:
    """The names of ``kind`` in the SQLite store at ``path``; [] when it cannot be read.

    Nothing is created: without a ``-wal`` file (no writer has the store open, and the last
    one checkpointed everything into the main file) the file is opened ``immutable``, since
    even a read-only open of a WAL database makes its ``-wal`` and ``-shm`` files; with one,
    those files exist already and a plain read-only open sees the latest commits."""
    if not path.is_file():
        return []  # sqlite3 would create it
    wal = path.with_name(path.name + "-wal").exists()
    try:
        uri = f"file:{quote(str(path.absolute()))}?mode=ro{'' if wal else '&immutable=1'}"
        connection = sqlite3.connect(uri, uri=True, timeout=0.5)
        try:
            return [str(row[0]) for row in connection.execute(QUERIES[kind])]
        finally:
            connection.close()
    except sqlite3.Error:
        return []


def main(argv: list[str]) -> int:
    kind, sim, db = None, None, None
    words = iter(argv)
    for word in words:
        if word in ("--sim", "--db"):
            value = next(words, None)
            if word == "--sim":
                sim = value
            else:
                db = value
        elif word.startswith(("--sim=", "--db=")):
            option, _, value = word.partition("=")
            sim, db = (value, db) if option == "--sim" else (sim, value)
        elif word in QUERIES and kind is None:
            kind = word
        else:
            print(f"usage: python -m vfpool.complete {'|'.join(QUERIES)} [--sim DIR] "
                  "[--db URL]", file=sys.stderr)
            return 2
    if kind is None:
        print(f"usage: python -m vfpool.complete {'|'.join(QUERIES)} [--sim DIR] [--db URL]",
              file=sys.stderr)
        return 2
    path = store_path(sim, db)
    if path is not None:
        for name in names(kind, path):
            print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
