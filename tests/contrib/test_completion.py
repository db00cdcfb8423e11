"""contrib/bash-completion: the committed file matches the typer tree; bash completes with it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from vfpool import complete as reader
from vfpool.cli.main import app
from vfpool.store import default_db_url, open_store

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "bash-completion"
BASH = shutil.which("bash")


def test_committed_completion_is_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(CONTRIB / "generate.py"), "--stdout"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (CONTRIB / "vfpool").read_text(), (
        "contrib/bash-completion/vfpool is stale: run "
        ".venv/bin/python contrib/bash-completion/generate.py")


def complete(line: str, cwd: Path | None = None,
             env: dict[str, str] | None = None) -> list[str]:
    """What <TAB> offers at the end of ``line``; a trailing space starts a new word."""
    if BASH is None:
        pytest.skip("bash is not installed")
    words = line.split()
    if line.endswith(" "):
        words.append("")
    array = " ".join("'" + word.replace("'", "'\\''") + "'" for word in words)
    script = (f"source {CONTRIB / 'vfpool'}; COMP_WORDS=({array}); "
              f"COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; COMP_POINT={len(line)}; "
              '_vfpool; printf "%s\\n" "${COMPREPLY[@]}"')
    result = subprocess.run([BASH, "--norc", "--noprofile", "-c", script], capture_output=True,
                            text=True, timeout=120, check=False, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return sorted(word for word in result.stdout.splitlines() if word)


def tree_commands(*path: str) -> list[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return sorted(name for name, child in command.commands.items()  # type: ignore[attr-defined]
                  if not child.hidden)


@pytest.mark.parametrize(("line", "expected"), [
    ("vfpool pool st", ["start"]),
    ("vfpool lease ", ["acquire", "list", "release", "show"]),
    ("vfpool --sim /tmp/host pool def", ["define"]),
    ("vfpool --debug --db sqlite:///x.db lease rel", ["release"]),
    ("vfpool --", ["--db", "--debug", "--help", "--json", "--lock-timeout", "--sim",
                   "--version"]),
    ("vfpool lease release 3 --t", ["--token"]),
    ("vfpool pool define p --pf enp5s0f0 --me", ["--method"]),
    ("vfpool pool define p --method ", ["auto", "module-param", "sysfs"]),
    ("vfpool pool define p --method = s", ["sysfs"]),
    ("vfpool pool define p --mode m", ["macvtap"]),
    ("vfpool pool define p --no-", ["--no-spoofchk", "--no-trust"]),
    ("vfpool report --format ", ["csv", "json", "prometheus", "table"]),
    ("vfpool lease acquire p --owner ", []),            # free text: no guesses
    ("vfpool lease acquire p --owner --count 2 --j", ["--json"]),
    ("vfpool pool nosuch ", []),
    ("vfpool vm launch --owner vm1 -- -m", []),         # QEMU's argv: files only
])
def test_bash_completes(line: str, expected: list[str], tmp_path: Path) -> None:
    assert complete(line, cwd=tmp_path) == expected


def test_top_level_and_every_group_complete_their_subcommands(tmp_path: Path) -> None:
    assert complete("vfpool ", cwd=tmp_path) == tree_commands()
    for group in ("sim", "pf", "pool", "lease", "vm", "db"):
        assert complete(f"vfpool {group} ", cwd=tmp_path) == tree_commands(group), group


def test_paths_complete_as_files_or_directories(tmp_path: Path) -> None:
    (tmp_path / "hostdir").mkdir()
    (tmp_path / "pool.toml").write_text("")
    assert complete("vfpool --sim ", cwd=tmp_path) == ["hostdir"]
    assert complete("vfpool sim reboot h", cwd=tmp_path) == ["hostdir"]
    assert complete("vfpool pool define --file po", cwd=tmp_path) == ["pool.toml"]
    assert complete("vfpool report --output ", cwd=tmp_path) == ["hostdir", "pool.toml"]


# -- pool names and lease ids, from a real store -------------------------------------------------

VENV_BIN = Path(sys.executable).parent


def vfpool(*args: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VFPOOL_")}
    result = subprocess.run([str(VENV_BIN / "vfpool"), *args], capture_output=True, text=True,
                            timeout=120, check=False, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def complete_with_store(line: str, cwd: Path, **env: str) -> list[str]:
    """complete() with this venv's vfpool first on PATH, as an installed one would be."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VFPOOL_")}
    environment.update(PATH=f"{VENV_BIN}:{os.environ['PATH']}", **env)
    return complete(line, cwd=cwd, env=environment)


@pytest.fixture(scope="module")
def store_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated host whose store vfpool itself wrote: pools tenant-a (active) and
    tenant-b, blue (inactive); leases 1 and 3 live, lease 2 released."""
    root = tmp_path_factory.mktemp("completion") / "host"
    vfpool("sim", "create", str(root))
    sim = ("--sim", str(root))
    vfpool(*sim, "pool", "define", "tenant-a", "--pf", "enp133s0f0", "--vfs", "4")
    vfpool(*sim, "pool", "define", "tenant-b", "--pf", "enp5s0f0", "--vfs", "2")
    vfpool(*sim, "pool", "define", "blue", "--pf", "enp5s0f1", "--vfs", "2")
    vfpool(*sim, "pool", "start", "tenant-a")
    leases = json.loads(vfpool(*sim, "lease", "acquire", "tenant-a", "--owner", "vm1",
                               "--count", "2", "--json"))
    assert [lease["id"] for lease in leases] == [1, 2]
    vfpool(*sim, "lease", "release", "2", "--force")
    vfpool(*sim, "lease", "acquire", "tenant-a", "--owner", "vm2")
    return root


POOLS = ["blue", "tenant-a", "tenant-b"]


@pytest.mark.parametrize(("words", "expected"), [
    ("pool start ", POOLS),
    ("pool start t", ["tenant-a", "tenant-b"]),
    ("pool destroy tenant-a --force ", []),      # one NAME only
    ("pool info ", POOLS),
    ("pool resize --vfs 3 ", POOLS),
    ("pool define ", []),                        # a new name
    ("lease acquire ", POOLS),
    ("lease acquire tenant-a --owner vm3 --count ", []),
    ("lease list --pool ", POOLS),
    ("lease list --pool =", POOLS),              # bash splits "--pool=" at the "="
    ("lease release ", ["1", "3"]),              # live leases only
    ("lease show ", ["1", "3"]),
    ("vm args ", ["1", "3"]),
    ("vm args 1 ", ["1", "3"]),                  # LEASE_ID...
    ("vm launch --owner vm1 --pool ", POOLS),
    ("vm detach /run/qmp.sock ", ["1", "3"]),    # QMP_SOCKET LEASE_ID
])
def test_store_names_complete(words: str, expected: list[str], store_host: Path,
                              tmp_path: Path) -> None:
    assert complete_with_store(f"vfpool --sim {store_host} {words}", tmp_path) == expected
    # "--sim=DIR" reaches the function as "--sim" "=" "DIR" (COMP_WORDBREAKS has "=").
    assert complete_with_store(f"vfpool --sim = {store_host} {words}", tmp_path) == expected


def test_the_store_is_found_by_db_url_env_and_tilde(store_host: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{store_host}/vfpool.db"
    assert complete_with_store(f"vfpool --db {url} pool start ", tmp_path) == POOLS
    assert complete_with_store("vfpool pool start ", tmp_path,
                               VFPOOL_DB=url) == POOLS
    assert complete_with_store("vfpool lease show ", tmp_path,
                               VFPOOL_SIM=str(store_host)) == ["1", "3"]
    assert complete_with_store("vfpool --sim ~/host pool start ", tmp_path,
                               HOME=str(store_host.parent)) == POOLS
    # The --db URL wins over VFPOOL_SIM, as in the CLI.
    assert complete_with_store(f"vfpool --db sqlite:///{tmp_path}/none.db pool start ",
                               tmp_path, VFPOOL_SIM=str(store_host)) == []


def test_completion_creates_no_store_and_touches_none(store_host: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert complete_with_store(f"vfpool --sim {empty} pool start ", tmp_path) == []
    assert complete_with_store(f"vfpool --db sqlite:///{empty}/x.db lease show ",
                               tmp_path) == []
    assert complete_with_store("vfpool --db postgresql://h/vfpool pool start ", tmp_path) == []
    assert list(empty.iterdir()) == []
    before = sorted(path.name for path in store_host.iterdir())
    assert complete_with_store(f"vfpool --sim {store_host} pool start ", tmp_path) == POOLS
    assert sorted(path.name for path in store_host.iterdir()) == before  # no -wal, no -shm


def test_a_store_open_in_another_process_shows_its_latest_commit(store_host: Path,
                                                                 tmp_path: Path) -> None:
    """A running writer (`vfpool watch`, say) keeps a -wal file with the newest commits."""
    writer = sqlite3.connect(store_host / "vfpool.db")
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("UPDATE pools SET name = 'green' WHERE name = 'blue'")
        writer.commit()
        assert (store_host / "vfpool.db-wal").exists()
        assert complete_with_store(f"vfpool --sim {store_host} pool info ", tmp_path) == [
            "green", "tenant-a", "tenant-b"]
    finally:
        writer.execute("UPDATE pools SET name = 'blue' WHERE name = 'green'")
        writer.commit()
        writer.close()


def test_the_reader_imports_no_sqlalchemy(store_host: Path) -> None:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "vfpool.complete",
                             "pools", "--sim", str(store_host)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0
    assert result.stdout.split() == POOLS
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")]
    assert "sqlite3" in imported
    assert not [name for name in imported
                if name.split(".")[0] in ("sqlalchemy", "alembic", "typer", "click", "rich")]
    # -m runs vfpool.complete as __main__, after importing its package, and nothing else
    # of vfpool.
    assert [name for name in imported if name.startswith("vfpool")] == ["vfpool"]


def test_the_reader_finds_the_store_the_cli_uses(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VFPOOL_DB", raising=False)
    monkeypatch.delenv("VFPOOL_SIM", raising=False)
    assert f"sqlite:///{reader.store_path(str(tmp_path), None)}" == default_db_url(tmp_path)
    for euid in (0, 1000):
        monkeypatch.setattr(os, "geteuid", lambda euid=euid: euid)
        for state_home in ("", "relative", str(tmp_path / "state")):
            monkeypatch.setenv("XDG_STATE_HOME", state_home)
            assert f"sqlite:///{reader.store_path(None, None)}" == default_db_url(None)
    assert reader.sqlite_path("sqlite:////abs/v.db") == Path("/abs/v.db")
    assert reader.sqlite_path("sqlite+pysqlite:///rel.db?timeout=3") == Path("rel.db")
    assert reader.sqlite_path("sqlite://") is None
    assert reader.sqlite_path("postgresql+psycopg://u@h/vfpool") is None


def test_every_query_runs_on_a_migrated_store(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/v.db")
    store.close()
    for kind in reader.QUERIES:
        assert reader.names(kind, tmp_path / "v.db") == []
    connection = sqlite3.connect(tmp_path / "v.db")
    for query in reader.QUERIES.values():
        connection.execute(query).fetchall()  # raises on a column or table that is gone
    connection.close()
