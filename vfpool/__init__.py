"""vfpool: SR-IOV network pools for Linux hypervisor hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from vfpool.api import Host, Lease, connect

__all__ = ["Host", "Lease", "__version__", "connect"]


def __getattr__(name: str) -> Any:
    # The API is imported on first use, so `import vfpool` stays cheap for the CLI.
    if name in ("Host", "Lease", "connect"):
        from vfpool import api

        return getattr(api, name)
    raise AttributeError(f"module 'vfpool' has no attribute {name!r}")
