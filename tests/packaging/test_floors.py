"""tests/packaging/floors.py: the constraints `make test-floor` installs come from setup.cfg."""

from __future__ import annotations

import configparser
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.packaging import floors as floors_module

FLOORS = Path(floors_module.__file__)


def test_every_runtime_requirement_has_a_floor_and_tools_float() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(floors_module.SETUP_CFG)
    runtime = {floors_module.canonical(line.split(">")[0].split("<")[0].split("=")[0].strip())
               for line in parser.get("options", "install_requires").splitlines() if line}
    found = floors_module.floors()
    assert runtime <= {floors_module.canonical(name) for name in found}
    assert "prometheus_client" in found
    assert not {"pytest", "mypy", "ruff", "build"} & set(found)
    # Full versions: "2.0" would let pip pick 2.0.0 where the floor is 2.0.22.
    assert all(version.count(".") == 2 for version in found.values()), found


def test_constraints_pin_each_floor_exactly() -> None:
    result = subprocess.run([sys.executable, str(FLOORS)], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    pins = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert pins == [f"{name}=={floor}" for name, floor in floors_module.floors().items()]


def test_a_requirement_without_a_floor_is_refused(tmp_path: Path) -> None:
    setup_cfg = tmp_path / "setup.cfg"
    setup_cfg.write_text("[options]\ninstall_requires =\n    sqlalchemy>=2.0.22,<3\n"
                         "    typer\n[options.extras_require]\ndev =\n    pytest\n")
    with pytest.raises(SystemExit, match="typer has no floor"):
        floors_module.floors(setup_cfg)
    setup_cfg.write_text("[options]\ninstall_requires =\n    sqlalchemy>=2.0.22,<3\n"
                         "[options.extras_require]\ndev =\n    pytest>=8\n")
    assert floors_module.floors(setup_cfg) == {"sqlalchemy": "2.0.22"}


def test_verify_names_each_dependency_not_at_its_floor() -> None:
    expected = sorted(name for name, floor in floors_module.floors().items()
                      if version(name) != floor)
    problems = floors_module.verify()
    assert sorted(problem.split(":")[0] for problem in problems) == expected
    result = subprocess.run([sys.executable, str(FLOORS), "--verify"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == (1 if expected else 0)
    assert result.stderr.count("error: ") == len(expected)
