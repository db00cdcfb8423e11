"""contrib/systemd units: their commands exist and do what the unit says, on a simulated host."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vfpool.cli.contrib import systemd_units, under_home
from vfpool.errors import InvalidInput
from vfpool.service import pools
from vfpool.service.context import Context
from vfpool.sim.host import SimHost

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
VFPOOL = Path(sys.executable).parent / "vfpool"


def exec_lines(unit: str) -> list[list[str]]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    # ExecStart= may repeat; configparser keeps the last, so read the lines by hand.
    lines = (UNITS / unit).read_text().splitlines()
    parser.read_string("\n".join(line for line in lines if not line.startswith("ExecStart=")))
    assert parser.get("Service", "Type") == "oneshot"
    return [shlex.split(line.split("=", 1)[1]) for line in lines if line.startswith("ExecStart=")]


def test_autostart_unit_starts_autostart_pools_then_reconciles(sim_root: Path,
                                                               ctx: Context) -> None:
    commands = exec_lines("vfpool-autostart.service")
    assert [argv[1:] for argv in commands] == [["pool", "start", "--autostarted"],
                                               ["reconcile"]]
    text = (UNITS / "vfpool-autostart.service").read_text()
    assert "After=systemd-udev-settle.service" in text
    pools.define(ctx, pools.parse_spec("a", ["enp133s0f0"], 4, "auto", "vfio",
                                       pools.VfDefaults()))
    pools.set_autostart(ctx, "a", True)
    pools.start(ctx, "a")
    SimHost(sim_root).reboot()
    assert pools.info(ctx, "a").needs_start is True
    for argv in commands:
        result = subprocess.run([str(VFPOOL), "--sim", str(sim_root), *argv[1:]],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
    record = pools.info(ctx, "a")
    assert (record.needs_start, record.vfs.free) == (False, 4)


# -- the generator, `systemd-analyze verify` and `systemd-analyze security` -------------------

MAN_PAGE = UNITS.parent / "man" / "vfpool.1"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
# What `pool start`, `reconcile` and `watch` cannot work without, as systemd-analyze's JSON
# names it: "set": false means the unit does not take it away.
NEEDED = {
    "vfpool-autostart.service": [
        "ProtectKernelTunables",                  # sriov_numvfs, driver_override, bind
        "ProtectKernelModules", "CapabilityBoundingSet_CAP_SYS_MODULE",
        "SystemCallFilter_module",                # vfio-pci, PF drivers with max_vfs=
        "CapabilityBoundingSet_CAP_NET_ADMIN",    # VF config, macvtaps over rtnetlink
        "CapabilityBoundingSet_CAP_SYS_ADMIN", "RestrictNamespaces_net",  # setns(2)
        "RestrictAddressFamilies_AF_NETLINK", "PrivateNetwork",
    ],
    "vfpool-watch.service": ["RestrictAddressFamilies_AF_NETLINK", "PrivateNetwork"],
}


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return subprocess.run([SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=300,
                          check=False, cwd=cwd, env={**os.environ, "SYSTEMD_PAGER": "",
                                                     "MANPATH": str(cwd / "man")})


def generate(tmp_path: Path, *args: str) -> Path:
    """Run `vfpool contrib systemd ARGS --output-dir DIR`, with the man page installed in
    DIR/man for `man` to find; returns DIR."""
    out = tmp_path / "units"
    result = subprocess.run([str(VFPOOL), "contrib", "systemd", *args, "--output-dir", str(out)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    (out / "man" / "man1").mkdir(parents=True)
    shutil.copy(MAN_PAGE, out / "man" / "man1" / "vfpool.1")
    return out


def test_committed_units_are_the_generated_ones_for_prefix_usr() -> None:
    units = systemd_units("/usr/bin/vfpool")
    assert sorted(units) == sorted(path.name for path in UNITS.glob("*.service"))
    for name, text in units.items():
        assert (UNITS / name).read_text() == text, (
            f"contrib/systemd/{name} is stale: run `make contrib` "
            "(vfpool contrib systemd --prefix /usr --output-dir contrib/systemd)")


def test_units_name_the_running_vfpool_and_pass_verify(tmp_path: Path) -> None:
    out = generate(tmp_path)
    for name in NEEDED:
        lines = (out / name).read_text().splitlines()
        commands = [shlex.split(line.split("=", 1)[1]) for line in lines
                    if line.startswith("ExecStart=")]
        assert commands and all(argv[0] == str(VFPOOL) for argv in commands), commands
        assert "Documentation=man:vfpool(1)" in lines
    result = analyze("verify", *(f"./{name}" for name in NEEDED), cwd=out)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def test_verify_fails_without_the_man_page_and_the_executable(tmp_path: Path) -> None:
    out = generate(tmp_path, "--prefix", str(tmp_path / "nowhere"))
    shutil.rmtree(out / "man")
    result = analyze("verify", "./vfpool-watch.service", cwd=out)
    assert result.returncode != 0
    assert f"{tmp_path}/nowhere/bin/vfpool is not executable" in result.stderr
    assert "man vfpool(1)" in result.stderr


def test_a_prefix_with_blanks_and_specifiers_is_quoted(tmp_path: Path) -> None:
    prefix = tmp_path / "opt dir %n $HOME"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "vfpool").symlink_to(VFPOOL)
    out = generate(tmp_path, "--prefix", str(prefix))
    text = (out / "vfpool-watch.service").read_text()
    assert f'ExecStart="{str(prefix).replace("%", "%%")}/bin/vfpool" watch' \
        in text
    # verify resolves the command line, specifiers included, and checks the file exists.
    result = analyze("verify", "./vfpool-watch.service", "./vfpool-autostart.service", cwd=out)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def test_units_are_hardened_to_at_most_5_and_keep_what_vfpool_needs(tmp_path: Path) -> None:
    out = generate(tmp_path)
    for name, needed in NEEDED.items():
        result = analyze("security", "--offline=true", "--no-pager", f"./{name}", cwd=out)
        assert result.returncode == 0, result.stderr
        found = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)",
                          result.stdout)
        assert found, result.stdout
        print(f"{name}: systemd-analyze security {found[1]}")
        assert float(found[1]) <= 5.0, result.stdout
        checks = analyze("security", "--offline=true", "--json=short", f"./{name}", cwd=out)
        assert checks.returncode == 0, checks.stderr
        status = {check["json_field"]: check["set"] for check in json.loads(checks.stdout)}
        for field in needed:
            assert status[field] is False, f"{name} takes away {field}, which vfpool needs"
        for field in ("ProtectSystem", "NoNewPrivileges", "PrivateTmp", "ProtectClock",
                      "ProtectControlGroups", "RestrictSUIDSGID", "LockPersonality"):
            assert status[field] is True, f"{name} lacks {field}"
        text = (out / name).read_text()
        for line in ("StateDirectory=vfpool", "RuntimeDirectory=vfpool",
                     "RuntimeDirectoryPreserve=yes", "SystemCallErrorNumber=EPERM"):
            assert line in text.splitlines(), f"{name} lacks {line}"
    assert "ReadWritePaths=/etc/modprobe.d" in (out / "vfpool-autostart.service").read_text()


def test_a_home_directory_install_keeps_home_readable(tmp_path: Path) -> None:
    script = tmp_path / "vfpool"
    script.write_text("#!/root/.pyenv/versions/3.11/bin/python\n")
    assert under_home(script) is True
    script.write_text("#!/usr/bin/python3\n")
    assert under_home(script) is (str(tmp_path).startswith(("/home/", "/root/")))
    homed = systemd_units("/root/venv/bin/vfpool", home=True)["vfpool-watch.service"]
    assert "ProtectHome=read-only" in homed.splitlines()
    assert "ProtectHome=yes" in systemd_units("/usr/bin/vfpool")["vfpool-watch.service"]


def test_relative_or_multiline_executables_are_refused() -> None:
    with pytest.raises(InvalidInput):
        systemd_units("bin/vfpool")
    with pytest.raises(InvalidInput):
        systemd_units("/usr/bin/vf\npool")
