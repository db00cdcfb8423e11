"""A lease command in a new process never sets up the ORM, nor builds its classes.

VM tooling starts `vfpool lease acquire` and `lease release` as new processes all day, and the
ORM's mapper configuration alone costs about 45 ms of such a process (README, limits). The
lease path runs on the DBAPI cursor (store/direct.py), the open's host lookup and the first
write's host update are Core statements, so once a host is known to the store its lease
commands never touch a mapped class. They do not even import store/models.py: the lease path
reads the Core tables of store/tables.py, and the ORM's declarative classes were a third of
vfpool's own imports in such a process. This pins both, on each backend: a new ORM query on
the path would configure the mappers, and a new import of the models would load them; either
fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.races import start_pool
from vfpool.sim.host import SimHost

# A `vfpool` process that says on its last stderr line whether the mappers were configured.
WATCHED = """
import sys
from sqlalchemy import event
from sqlalchemy.orm import Mapper

configured = []
event.listen(Mapper, "after_configured", lambda: configured.append(True))
from vfpool.cli.main import main

sys.argv = ["vfpool", *sys.argv[1:]]
try:
    main()
finally:
    print("ORM configured" if configured else "ORM not configured",
          "models loaded" if "vfpool.store.models" in sys.modules else "models not loaded",
          sep=", ", file=sys.stderr)
"""


def _watched(root: Path, *args: str) -> tuple[str, str]:
    call = subprocess.run([sys.executable, "-c", WATCHED, "--sim", str(root), *args],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert call.returncode == 0, call.stderr
    return call.stdout, call.stderr.splitlines()[-1]


def test_a_lease_command_of_a_known_host_never_configures_the_orm(sim: SimHost) -> None:
    start_pool(sim.root, "p", "enp133s0f0", vfs=2, mode="vfio")  # the host is known now
    out, said = _watched(sim.root, "lease", "acquire", "p", "--owner", "vm1", "--json")
    assert said == "ORM not configured, models not loaded"
    [lease] = json.loads(out)
    _, said = _watched(sim.root, "lease", "list")
    assert said == "ORM not configured, models not loaded"
    _, said = _watched(sim.root, "lease", "release", str(lease["id"]), "--token",
                       lease["token"])
    assert said == "ORM not configured, models not loaded"
    out, _ = _watched(sim.root, "lease", "acquire", "p", "--owner", "vm2", "--json")
    released, said = _watched(sim.root, "lease", "release", "--owner", "vm2", "--json")
    assert said == "ORM not configured, models not loaded"
    assert [lease["id"] for lease in json.loads(released)] == [json.loads(out)[0]["id"]]
    # The watch itself works: a command that reads through the ORM is seen.
    _, said = _watched(sim.root, "report")
    assert said == "ORM configured, models loaded"
