"""The sdist holds the whole tracked source tree, and a wheel built from it installs the
package, its migrations, the man page and the completion."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import vfpool

REPO = Path(__file__).resolve().parents[2]
NAME = f"vfpool-{vfpool.__version__}"
# Files that the sdist adds: its metadata. setup.cfg is tracked; setuptools rewrites it.
GENERATED = {"PKG-INFO", "setup.cfg"}
GENERATED_DIR = "vfpool.egg-info/"


def tracked_files() -> list[str]:
    """The files git tracks or would track (not ignored), that exist in the work tree."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout (or no git), so there is no file list to compare with")
    result = subprocess.run([git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.skip(f"git ls-files failed here: {result.stderr.strip()}")
    return sorted(name for name in set(result.stdout.split("\0"))
                  if name and (REPO / name).is_file())


def build(kind: str, source: Path, out: Path) -> Path:
    """`python -m build --KIND` from source into out, with this venv's setuptools (dev extra):
    no isolated environment, so no download."""
    result = subprocess.run([sys.executable, "-m", "build", f"--{kind}", "--no-isolation",
                             "--outdir", str(out), str(source)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    built = sorted(out.glob("*.tar.gz" if kind == "sdist" else "*.whl"))
    assert len(built) == 1, built
    return built[0]


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """An sdist built from a copy of the tracked files (the work tree stays untouched)."""
    files = tracked_files()
    tmp = tmp_path_factory.mktemp("sdist")
    source = tmp / "src"
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    return build("sdist", source, tmp / "dist"), files


def members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        names = [member.name for member in tar.getmembers() if member.isfile()]
    assert all(name.startswith(f"{NAME}/") for name in names), names[:5]
    return sorted(name.removeprefix(f"{NAME}/") for name in names)


def test_sdist_holds_exactly_the_tracked_files(sdist: tuple[Path, list[str]]) -> None:
    archive, files = sdist
    names = members(archive)
    missing = sorted(set(files) - set(names))
    assert missing == [], f"the sdist lacks tracked files (MANIFEST.in): {missing}"
    extra = sorted(name for name in set(names) - set(files)
                   if name not in GENERATED and not name.startswith(GENERATED_DIR))
    assert extra == [], f"the sdist has files git does not track: {extra}"
    for needed in ("LICENSE", "README.md", "Makefile", "mk/ops.mk", ".ci/run", "MANIFEST.in",
                   "contrib/man/vfpool.1", "contrib/bash-completion/vfpool",
                   "contrib/systemd/vfpool-autostart.service", "tests/conftest.py",
                   "tests/data/stores/release-0.1.0.sql", "migrations/versions/0001_initial.py",
                   "setup.cfg", "pyproject.toml"):
        assert needed in names, needed
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_a_wheel_built_from_the_sdist_installs_everything(sdist: tuple[Path, list[str]],
                                                          tmp_path: Path) -> None:
    archive, _ = sdist
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    wheel = build("wheel", tmp_path / NAME, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as zipped:
        names = set(zipped.namelist())
        metadata = zipped.read(f"{NAME}.dist-info/METADATA").decode()
    data = f"{NAME}.data/data"
    for needed in ("vfpool/cli/contrib.py", "vfpool/complete.py", "vfpool/py.typed",
                   "vfpool/migrations/env.py", "vfpool/migrations/script.py.mako",
                   "vfpool/migrations/versions/0001_initial.py",
                   f"{data}/share/man/man1/vfpool.1",
                   f"{data}/share/bash-completion/completions/vfpool"):
        assert needed in names, needed
    assert any(name.startswith(f"{NAME}.dist-info/") and name.endswith("/LICENSE")
               for name in names), sorted(names)
    assert not [name for name in names if name.startswith("tests/")]
    assert "Apache" in metadata
