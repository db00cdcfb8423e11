"""Reads never write (issue 13): a read command on a store that does not exist prints the
empty result and creates nothing, not the database nor its folder; and an empty list says,
on stderr only, what to do next."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from vfpool.host.identity import read_identity

Cli = Callable[..., CliResult]

# Each read command, and its exit code on an empty store (a `show` names what is missing).
READS = [
    (("pf", "list"), 0), (("pf", "show", "enp133s0f0"), 0), (("pool", "list"), 0),
    (("pool", "list", "--all"), 0), (("pool", "show", "a"), 3), (("pool", "dumpconfig", "a"), 3),
    (("lease", "list"), 0), (("lease", "list", "--all"), 0), (("lease", "show", "1"), 3),
    (("report",), 0), (("report", "--format", "prometheus"), 0), (("host", "list"), 0),
    (("vm", "args", "1"), 3), (("fleet", "place", "a", "--count", "1"), 5), (("events",), 0),
    (("events", "--pool", "a", "--json"), 0),
]


def tree(root: Path) -> set[str]:
    return {str(Path(folder, name).relative_to(root)) for folder, folders, files in
            os.walk(root) for name in [*folders, *files]}


@pytest.mark.parametrize(("command", "code"), READS, ids=lambda v: " ".join(v)
                         if isinstance(v, tuple) else str(v))
def test_a_read_on_a_missing_store_creates_nothing(command: tuple[str, ...], code: int,
                                                   cli: Cli, sim_root: Path,
                                                   tmp_path: Path) -> None:
    read_identity(sim_root, simulated=True)  # as `vfpool sim create` leaves it
    before = tree(sim_root)
    elsewhere = tmp_path / "state" / "vfpool" / "vfpool.db"
    for args in (("--sim", str(sim_root)), ("--sim", str(sim_root), "--db",
                                             f"sqlite:///{elsewhere}")):
        result = cli(*args, *command)
        assert result.exit_code == code, result.stderr
        assert "Traceback" not in result.stderr
    assert tree(sim_root) == before
    assert not (tmp_path / "state").exists()


def test_empty_reads_print_the_empty_result(cli: Cli, sim_root: Path) -> None:
    sim = ("--sim", str(sim_root))
    assert json.loads(cli(*sim, "pool", "list", "--all", "--json").stdout) == []
    assert json.loads(cli(*sim, "lease", "list", "--json").stdout) == []
    report = json.loads(cli(*sim, "report", "--json").stdout)
    assert report["pools"] == [] and report["events"] == []
    assert not (sim_root / "vfpool.db").exists()


def test_a_read_after_a_write_sees_it(cli: Cli, sim_root: Path) -> None:
    """The empty stand-in is only for a missing store: once a write made it, reads use it."""
    sim = ("--sim", str(sim_root))
    assert cli(*sim, "pool", "define", "a", "--pf", "enp133s0f0", "--vfs", "2").exit_code == 0
    names = [pool["name"] for pool in json.loads(cli(*sim, "pool", "list", "--all",
                                                     "--json").stdout)]
    assert names == ["a"]


@pytest.mark.parametrize(("command", "hint"), [
    (("pool", "list"), "no active pools; `vfpool pool list --all` shows defined ones"),
    (("pool", "list", "--all"), "no pools are defined; define one with `vfpool pool define"),
    (("lease", "list"), "no live leases; `vfpool lease list --all` includes released ones; "
                        "lease a VF with `vfpool lease acquire POOL --owner OWNER`"),
    (("lease", "list", "--all"), "no live leases; lease a VF with"),
], ids=" ".join)
def test_an_empty_list_says_what_to_do_next_on_stderr(command: tuple[str, ...], hint: str,
                                                      cli: Cli, sim_root: Path) -> None:
    result = cli("--sim", str(sim_root), *command)
    assert result.exit_code == 0
    assert hint in result.stderr
    assert len(result.stdout.splitlines()) == 1  # the header row alone
    as_json = cli("--sim", str(sim_root), *command, "--json")
    assert (as_json.stdout, as_json.stderr) == ("[]\n", "")


def test_no_pf_hint_on_a_host_without_pci_devices(cli: Cli, sim_root: Path) -> None:
    """A host whose PCI bus shows no device (the sim's bus emptied) has no PF to list."""
    for link in (sim_root / "sys/bus/pci/devices").iterdir():
        link.unlink()
    result = cli("--sim", str(sim_root), "pf", "list")
    assert result.exit_code == 0
    assert "no SR-IOV capable PF on this host" in result.stderr
    assert len(result.stdout.splitlines()) == 1
