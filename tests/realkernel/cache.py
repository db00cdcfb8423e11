"""Fetch and cache what the real-kernel tier boots, without touching the host's apt setup.

What it needs and where it comes from (see /work/shared/reference/REAL-KERNEL.md):

- QEMU 8.0 or newer, which emulates the Intel 82576 (``-device igb``) with SR-IOV. Debian 12's
  own QEMU is 7.2, so it comes from ``<codename>-backports`` (QEMU 10 today).
- A Debian kernel with ``igb``, ``igbvf``, ``vfio-pci``, ``vhost_net`` and ``macvtap`` as modules
  (the backports 6.12 kernel).
- Debian's ``udev`` (systemd-udevd, its rules and hwdb) and ``libsystemd-shared`` for a real udevd
  in the guest, and ``busybox-static`` for the initramfs.

The mirror is the machine's own Debian mirror, read at run time from its apt sources; no host
name is written here. apt runs with a private source list, list directory and cache
(``-o Dir::Etc::SourceList=…``), so the host's apt state is never changed. Packages are
unpacked with ``dpkg -x``, never installed.

Layout under ``.cache/realkernel/`` (ignored by git):

    apt/          private sources, lists and apt cache
    debs/         the downloaded .deb files
    qemu/         QEMU and its firmware, unpacked
    guest/        a merged-/usr tree laid over the host's / in the guest: the kernel's modules
                  (with modules.dep), udev with a compiled hwdb, libsystemd-shared, busybox
    initramfs.cpio.gz
    manifest.json written last: its presence means the cache is complete
    unavailable   why the last fetch failed (the tier skips with this reason)

Run it as ``python tests/realkernel/cache.py`` (``make realkernel-cache`` does); a second run
finds the manifest and does nothing. ``--refresh`` fetches again.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "realkernel"
MANIFEST = "manifest.json"
UNAVAILABLE = "unavailable"
INIT_SCRIPT = Path(__file__).resolve().parent / "guest_boot" / "initramfs-init"
# Modules the initramfs loads to mount the host's / over 9p under an overlay (in this order:
# netfs before 9pnet, 9pnet before its transport and the file system).
INITRAMFS_MODULES = ("fs/netfs/netfs", "net/9p/9pnet", "net/9p/9pnet_virtio", "fs/9p/9p",
                     "fs/overlayfs/overlay")
QEMU_PACKAGES = ("qemu-system-x86", "qemu-system-common", "qemu-system-data")
MIN_QEMU = (8, 0)  # the first QEMU with the emulated 82576 (igb)
APT_TIMEOUT = 300
MANIFEST_FORMAT = 1


class Unavailable(Exception):
    """The tier cannot get what it needs on this machine; the message says why."""


@dataclass(frozen=True)
class Cache:
    """A complete cache: what the harness boots."""

    root: Path
    qemu_version: str
    kernel_release: str
    udev_version: str

    @property
    def qemu(self) -> Path:
        return self.root / "qemu/usr/bin/qemu-system-x86_64"

    @property
    def qemu_env(self) -> dict[str, str]:
        # Without it the extracted QEMU loads the system QEMU's modules, which refuse to load.
        return {"QEMU_MODULE_DIR": str(self.root / "qemu/usr/lib/x86_64-linux-gnu/qemu")}

    @property
    def qemu_firmware_args(self) -> list[str]:
        # SeaBIOS and QEMU's own data first; the host's ipxe-qemu ROMs through /usr/share/qemu.
        return ["-L", str(self.root / "qemu/usr/share/seabios"),
                "-L", str(self.root / "qemu/usr/share/qemu"), "-L", "/usr/share/qemu"]

    @property
    def kernel(self) -> Path:
        return self.root / "guest/boot" / f"vmlinuz-{self.kernel_release}"

    @property
    def initramfs(self) -> Path:
        return self.root / "initramfs.cpio.gz"

    @property
    def guest_layer(self) -> Path:
        return self.root / "guest"


# --------------------------------------------------------------------------- apt, privately
def os_codename(os_release: Path = Path("/etc/os-release")) -> str:
    for line in os_release.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value.strip('"'):
            return value.strip('"')
    raise Unavailable(f"{os_release} names no VERSION_CODENAME; not a Debian release")


@dataclass(frozen=True)
class Mirror:
    uri: str
    signed_by: str | None


def host_mirror(codename: str, apt_dir: Path = Path("/etc/apt")) -> Mirror:
    """The Debian mirror the host's own apt uses for ``codename`` (deb822 or one-line form)."""
    for sources in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", sources.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and \
                    codename in fields.get("suites", "").split() and fields.get("uris"):
                return Mirror(fields["uris"].split()[0], fields.get("signed-by"))
    legacy = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in legacy:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == codename:
                return Mirror(words[1], None)
    raise Unavailable(f"no Debian mirror for {codename} in {apt_dir}/sources.list(.d)")


class Apt:
    """apt-get and apt-cache over private lists: the host's /etc/apt and /var/lib/apt stay
    as they are."""

    def __init__(self, root: Path, mirror: Mirror, suites: list[str]) -> None:
        self.root = root
        self.sources = root / "sources.sources"
        (root / "lists/partial").mkdir(parents=True, exist_ok=True)
        (root / "cache/archives/partial").mkdir(parents=True, exist_ok=True)
        signed = f"Signed-By: {mirror.signed_by}\n" if mirror.signed_by else ""
        self.sources.write_text(f"Types: deb\nURIs: {mirror.uri}\nSuites: {' '.join(suites)}\n"
                                f"Components: main\n{signed}")

    @property
    def options(self) -> list[str]:
        options = ["-o", f"Dir::Etc::SourceList={self.sources}",
                   "-o", "Dir::Etc::SourceParts=/dev/null",
                   "-o", f"Dir::State::Lists={self.root / 'lists'}",
                   "-o", f"Dir::Cache={self.root / 'cache'}",
                   "-o", "Acquire::Retries=2", "-o", "Acquire::http::Timeout=30"]
        if os.geteuid() == 0:
            # The private folders belong to root, so apt's _apt sandbox user cannot write them.
            options += ["-o", "APT::Sandbox::User=root"]
        return options

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        argv = [tool, *self.options, *args]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd,
                                    timeout=APT_TIMEOUT, check=False,
                                    env={**os.environ, "LC_ALL": "C"})
        except FileNotFoundError:
            raise Unavailable(f"{tool} is not installed") from None
        except subprocess.TimeoutExpired:
            raise Unavailable(f"`{tool} {' '.join(args)}` took more than {APT_TIMEOUT} s; "
                              "is the Debian registry reachable?") from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise Unavailable(f"`{tool} {' '.join(args)}` failed (exit {result.returncode}): "
                              + " / ".join(detail))
        return result.stdout

    def update(self) -> None:
        output = self.run("apt-get", "-q", "update")
        # apt-get update exits 0 even when it fetched nothing; an empty list is unreachable.
        if not any((self.root / "lists").glob("*_Packages*")):
            raise Unavailable("apt-get update fetched no package lists; is the Debian "
                              f"registry reachable? ({output.strip().splitlines()[-1:]})")

    def versions(self, package: str) -> list[tuple[str, str]]:
        """(version, suite) of every candidate, newest first."""
        found = []
        for line in self.run("apt-cache", "madison", package).splitlines():
            parts = [part.strip() for part in line.split("|")]
            if len(parts) >= 3 and parts[0] == package and "Packages" in parts[2]:
                found.append((parts[1], parts[2].split()[1].split("/")[0]))
        return sorted(set(found), key=functools.cmp_to_key(_compare_entries), reverse=True)

    def newest(self, package: str, suite: str | None = None) -> tuple[str, str]:
        for version, found_suite in self.versions(package):
            if suite is None or found_suite == suite:
                return version, found_suite
        raise Unavailable(f"package {package} is not in the mirror's "
                          f"{suite or 'suites'}")

    def depends(self, package: str, version: str) -> list[str]:
        text = self.run("apt-cache", "show", f"{package}={version}")
        for line in text.splitlines():
            if line.startswith("Depends:"):
                return [part.split()[0] for part in line[8:].split(",")]
        return []

    def download(self, into: Path, packages: list[tuple[str, str]]) -> list[Path]:
        into.mkdir(parents=True, exist_ok=True)
        self.run("apt-get", "-q", "download", *[f"{name}={version}" for name, version
                                                  in packages], cwd=into)
        files = []
        for name, version in packages:
            bare = version.split(":", 1)[-1]
            matches = [path for path in into.glob(f"{name}_*.deb")
                       if path.name.split("_")[1].replace("%3a", ":").split(":", 1)[-1] == bare]
            if not matches:
                raise Unavailable(f"apt-get download left no .deb for {name} {version}")
            files.append(matches[0])
        return files


def _compare_versions(left: str, right: str) -> int:
    if left == right:
        return 0
    result = subprocess.run(["dpkg", "--compare-versions", left, "lt", right], check=False)
    return -1 if result.returncode == 0 else 1


def _compare_entries(left: tuple[str, str], right: tuple[str, str]) -> int:
    return _compare_versions(left[0], right[0])


def upstream_version(debian_version: str) -> tuple[int, ...]:
    """``1:10.0.2+ds-2+deb13u1~bpo12+1`` → (10, 0, 2)."""
    upstream = debian_version.split(":", 1)[-1]
    numbers = re.match(r"(\d+(?:\.\d+)*)", upstream)
    return tuple(int(part) for part in numbers.group(1).split(".")) if numbers else ()


# --------------------------------------------------------------------------- unpacking
def unpack(debs: list[Path], into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        result = subprocess.run(["dpkg", "-x", str(deb), str(into)], capture_output=True,
                                text=True, check=False)
        if result.returncode != 0:
            raise Unavailable(f"dpkg -x {deb.name} failed: {result.stderr.strip()}")


def merge_usr(tree: Path) -> None:
    """Move /bin, /sbin, /lib into /usr and leave the symlinks merged-/usr Debian has.

    The tree is an overlay layer above the host's /, where /lib is a symlink: a real /lib
    directory in the layer would hide the host's whole /lib (and its libc) in the guest.
    """
    for name in ("bin", "sbin", "lib", "lib64"):
        top = tree / name
        if top.is_dir() and not top.is_symlink():
            target = tree / "usr" / name
            target.mkdir(parents=True, exist_ok=True)
            shutil.copytree(top, target, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(top)
            top.symlink_to(f"usr/{name}")


def _run(argv: list[str], what: str, **kwargs: object) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False,
                            timeout=600, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise Unavailable(f"{what} failed (exit {result.returncode}): "
                          f"{(result.stderr or result.stdout).strip()[-400:]}")


def prepare_guest_layer(layer: Path, release: str) -> None:
    merge_usr(layer)
    # The kernel package ships no modules.dep; modprobe in the guest needs it.
    _run(["depmod", "-b", str(layer), release], "depmod")
    # udev's postinst compiles the hwdb (ID_MODEL_FROM_DATABASE); dpkg -x runs no scripts.
    shared = layer / "usr/lib/x86_64-linux-gnu/systemd"
    hwdb = next(path for path in (layer / "usr/bin/systemd-hwdb", layer / "usr/bin/udevadm")
                if path.exists())
    argv = [str(hwdb), "update", f"--root={layer}", "--usr"] if hwdb.name == "systemd-hwdb" \
        else [str(hwdb), "hwdb", "--update", f"--root={layer}", "--usr"]
    _run(argv, "compiling the udev hwdb",
         env={**os.environ, "LD_LIBRARY_PATH": str(shared)})


# --------------------------------------------------------------------------- the initramfs
def _cpio_entry(out: io.BytesIO, name: str, mode: int, data: bytes = b"", *,
                rdev: tuple[int, int] = (0, 0), inode: int) -> None:
    """One "newc" (SVR4, no CRC) cpio entry, as the kernel's initramfs unpacker reads it."""
    encoded = name.encode() + b"\0"
    fields = [inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
    out.write(b"070701" + b"".join(f"{value:08x}".encode() for value in fields))
    out.write(encoded)
    out.write(b"\0" * (-(110 + len(encoded)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def build_initramfs(layer: Path, release: str, init_script: Path) -> bytes:
    """busybox, the 9p and overlay modules (decompressed: busybox insmod reads plain .ko) and
    the init script; gzip-compressed cpio."""
    modules = layer / "usr/lib/modules" / release / "kernel"
    out = io.BytesIO()
    inode = iter(range(1, 1000))
    directory, regular, executable, char = 0o040755, 0o100644, 0o100755, 0o020600
    for name in (".", "bin", "dev", "proc", "sys", "mnt", "newroot", "modules"):
        _cpio_entry(out, name, directory, inode=next(inode))
    _cpio_entry(out, "dev/console", char, rdev=(5, 1), inode=next(inode))
    _cpio_entry(out, "init", executable, init_script.read_bytes(), inode=next(inode))
    _cpio_entry(out, "bin/busybox", executable, (layer / "usr/bin/busybox").read_bytes(),
                inode=next(inode))
    for module in INITRAMFS_MODULES:
        packed = modules / f"{module}.ko.xz"
        data = lzma.decompress(packed.read_bytes()) if packed.exists() \
            else (modules / f"{module}.ko").read_bytes()
        _cpio_entry(out, f"modules/{Path(module).name}.ko", regular, data, inode=next(inode))
    _cpio_entry(out, "TRAILER!!!", 0, inode=0)
    return gzip.compress(out.getvalue(), compresslevel=1, mtime=0)


# --------------------------------------------------------------------------- the whole cache
@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(root: Path = CACHE) -> Cache | None:
    """The cache when it is complete, else None."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if manifest.get("format") != MANIFEST_FORMAT:
        return None
    cache = Cache(root, manifest["qemu_version"], manifest["kernel_release"],
                  manifest["udev_version"])
    if not (cache.qemu.exists() and cache.kernel.exists()):
        return None
    return cache


def _fetch(root: Path, log: list[str]) -> Cache:
    codename = os_codename()
    backports = f"{codename}-backports"
    mirror = host_mirror(codename)
    apt = Apt(root / "apt", mirror, [codename, backports])
    log.append(f"apt-get update ({codename}, {backports}) with private lists")
    apt.update()
    qemu_version, qemu_suite = apt.newest("qemu-system-x86")
    if upstream_version(qemu_version) < MIN_QEMU:
        raise Unavailable(f"the newest qemu-system-x86 in {codename}/{backports} is "
                          f"{qemu_version}; the emulated 82576 (igb) needs QEMU 8.0 or newer")
    seabios_version, _ = apt.newest("seabios")
    kernel_meta, _ = apt.newest("linux-image-amd64")
    image = next((name for name in apt.depends("linux-image-amd64", kernel_meta)
                  if name.startswith("linux-image-")), None)
    if image is None:
        raise Unavailable(f"linux-image-amd64 {kernel_meta} depends on no kernel image")
    image_version, _ = apt.newest(image)
    release = image.removeprefix("linux-image-")
    # udev and its private library must be one build; the release's own suite has both.
    udev_version, _ = apt.newest("udev", codename)
    busybox_version, _ = apt.newest("busybox-static", codename)
    qemu_wanted = [(name, apt.newest(name, qemu_suite)[0]) for name in QEMU_PACKAGES]
    guest_wanted = [(image, image_version), ("udev", udev_version),
                    ("libsystemd-shared", udev_version), ("busybox-static", busybox_version)]
    debs = root / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    log.append(f"apt-get download QEMU {qemu_version}, {image} {image_version}, "
               f"udev {udev_version}, busybox {busybox_version}")
    qemu_debs = apt.download(debs, [*qemu_wanted, ("seabios", seabios_version)])
    guest_debs = apt.download(debs, guest_wanted)
    for name in ("qemu", "guest"):
        shutil.rmtree(root / name, ignore_errors=True)
    log.append("dpkg -x, depmod, hwdb")
    unpack(qemu_debs, root / "qemu")
    unpack(guest_debs, root / "guest")
    prepare_guest_layer(root / "guest", release)
    cache = Cache(root, qemu_version, release, udev_version)
    _write_initramfs(cache)
    (root / MANIFEST).write_text(json.dumps({
        "format": MANIFEST_FORMAT, "qemu_version": qemu_version, "kernel_release": release,
        "kernel_version": image_version, "udev_version": udev_version,
        "busybox_version": busybox_version, "seabios_version": seabios_version,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=1) + "\n")
    return cache


def _write_initramfs(cache: Cache) -> None:
    """(Re)build the initramfs when the init script changed since it was built."""
    stamp = cache.root / "initramfs.sha256"
    wanted = _sha256(INIT_SCRIPT)
    if cache.initramfs.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return
    data = build_initramfs(cache.guest_layer, cache.kernel_release, INIT_SCRIPT)
    temporary = cache.initramfs.with_suffix(".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, cache.initramfs)
    stamp.write_text(wanted + "\n")


def ensure(root: Path = CACHE, *, refresh: bool = False, retry_after: float | None = None,
           log: list[str] | None = None) -> Cache:
    """The complete cache, fetched when missing; raises ``Unavailable`` with the reason.

    ``retry_after``: when the last fetch failed less than this many seconds ago, raise its
    reason again instead of waiting for an unreachable registry twice in one run.
    """
    log = log if log is not None else []
    with _locked(root):
        cache = None if refresh else load(root)
        if cache is not None:
            _write_initramfs(cache)
            return cache
        failed = root / UNAVAILABLE
        if retry_after is not None and failed.exists() and \
                time.time() - failed.stat().st_mtime < retry_after:
            raise Unavailable(failed.read_text().strip())
        (root / MANIFEST).unlink(missing_ok=True)
        try:
            cache = _fetch(root, log)
        except Unavailable as exc:
            failed.write_text(f"{exc}\n")
            raise
        except (OSError, subprocess.SubprocessError, StopIteration) as exc:
            failed.write_text(f"fetching the real-kernel tier failed: {exc!r}\n")
            raise Unavailable(failed.read_text().strip()) from exc
        failed.unlink(missing_ok=True)
        return cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refresh", action="store_true", help="fetch again even when cached")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when the tier's pieces cannot be had (default: say why "
                             "and exit 0, so the tier skips with that reason)")
    options = parser.parse_args(argv)
    log: list[str] = []
    started = time.monotonic()
    try:
        cache = ensure(refresh=options.refresh, log=log)
    except Unavailable as exc:
        for line in log:
            print(f"realkernel: {line}")
        print(f"realkernel: UNAVAILABLE, the real-kernel tier will skip: {exc}", file=sys.stderr)
        return 1 if options.strict else 0
    for line in log:
        print(f"realkernel: {line}")
    print(f"realkernel: cache ready in {time.monotonic() - started:.0f} s: QEMU "
          f"{cache.qemu_version}, kernel {cache.kernel_release}, udev {cache.udev_version} "
          f"({cache.root.relative_to(REPO)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
