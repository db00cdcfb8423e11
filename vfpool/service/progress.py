"""What long service operations report as they go: one message a step, to a callback the
caller gives (the CLI draws them on a terminal; the API and scripts pass nothing)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """The default ``Progress``: nothing."""
