"""Progress of long commands (pool start, resize, destroy, reconcile, vm launch) for the person
at a terminal.

The service reports steps through a ``Progress`` callback, one message a step ("PF
0000:85:00.0 (enp133s0f0): 0 -> 3 VFs"). On a terminal, ``progress()`` draws them with rich on
stderr: the current step with a spinner and its running time, each finished step kept as a line
with the time it took, and the whole command's time at the end. On a pipe or a file it returns a
callback that prints nothing, so scripts see stdout's data and stderr's errors only. rich is
imported only on a terminal, and honours NO_COLOR (the same text, no colours).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """Nothing: stderr is not a terminal."""


class TerminalProgress:
    """A ``Progress`` callback that draws steps with rich.progress on stderr."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.progress import Progress as Bars
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self.title = title
        self.console = Console(stderr=True)
        self.bars = Bars(SpinnerColumn(finished_text="-"), TextColumn("{task.description}"),
                         TimeElapsedColumn(), console=self.console, transient=False)
        self.task: Any = None
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        self._finish_step()
        self.task = self.bars.add_task(message, total=1)

    def _finish_step(self) -> None:
        if self.task is not None:
            self.bars.update(self.task, completed=1)
            self.bars.stop_task(self.task)
            self.task = None

    def __enter__(self) -> TerminalProgress:
        self.bars.start()
        self(self.title)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._finish_step()
        self.bars.stop()
        self.console.print(f"{self.title}: {time.monotonic() - self.started:.1f} s in all",
                           highlight=False)


@contextmanager
def progress(title: str) -> Iterator[Progress]:
    """The ``Progress`` callback for a command: drawn on a terminal, silent otherwise."""
    if not sys.stderr.isatty():
        yield _quiet
        return
    with TerminalProgress(title) as drawn:
        yield drawn
