"""The CLI matrix of `vfpool contrib` (issue 13): the systemd units it writes.

The units' content is tested in tests/contrib/test_systemd.py (systemd-analyze verify and
security); these cases pin the command's interface. No simulated host is involved.
"""

from __future__ import annotations

from tests.cli.clitest import NO_HOST, Category, units_written

contrib = Category("contrib", setup=NO_HOST, use_sim=False, doc="files for other tools")
CATEGORIES = [contrib]

contrib.valid("systemd-print", "contrib", "systemd", "--prefix", "/opt/vfpool",
              stdout_has=("# vfpool-autostart.service\n", "# vfpool-watch.service\n",
                          "ExecStart=/opt/vfpool/bin/vfpool pool start --autostarted\n",
                          "ExecStart=/opt/vfpool/bin/vfpool reconcile\n",
                          "ExecStart=/opt/vfpool/bin/vfpool watch\n"))
contrib.valid("systemd-output-dir", "contrib", "systemd", "--prefix", "/usr", "--output-dir",
              "{tmp}/units", checks=(units_written,))
contrib.invalid("systemd-output-dir-unwritable", 1,
                "error: cannot write /proc/vfpool-units/vfpool-autostart.service: ENOENT (No such "
                "file or directory)", "contrib", "systemd", "--output-dir", "/proc/vfpool-units")
