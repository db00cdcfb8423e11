"""Rendering results: one JSON document, or a plain aligned table that golden files can pin."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import typer

MISSING = "-"


def cell(value: Any) -> str:
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


# The colour of a state word on a terminal (SGR foreground codes): what is usable green, what
# is held or on its way yellow, what is lost or broken red, what is off dim.
STATE_COLOURS = {
    "active": "32", "free": "32", "started": "32", "up": "32",
    "leased": "33", "reserved": "33", "releasing": "33",
    "unusable": "31", "lost": "31", "stale": "31", "down": "31", "failed": "31",
    "inactive": "2", "released": "2",
}


def colour_on() -> bool:
    """Colour state words only when stdout is a terminal and NO_COLOR is unset (no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def state(text: str, *, colour: bool | None = None) -> str:
    """A state word (or a cell that starts with one), coloured on a terminal."""
    word = text.split(" ", 1)[0]
    code = STATE_COLOURS.get(word)
    if code is None or not (colour_on() if colour is None else colour):
        return text
    return f"\x1b[{code}m{word}\x1b[0m{text[len(word):]}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
          colour: bool | None = None) -> str:
    """Columns separated by two spaces, each as wide as its widest cell; no trailing blanks.
    A STATE column's words are coloured (after the padding is measured) when ``colour`` is
    true, or when it is None (the default) and stdout is a terminal; text bound for a file
    passes False."""
    text_rows = [[cell(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in text_rows)])
              for i, header in enumerate(headers)]
    coloured = {i for i, header in enumerate(headers) if header == "STATE"} \
        if (colour_on() if colour is None else colour) else set()
    lines = ["  ".join(header.ljust(width) for header, width in zip(headers, widths,
                                                                    strict=True)).rstrip()]
    for row in text_rows:
        lines.append("  ".join(
            state(value.ljust(width), colour=True) if i in coloured else value.ljust(width)
            for i, (value, width) in enumerate(zip(row, widths, strict=True))).rstrip())
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """One object as aligned ``key  value`` lines (`pool show`, `lease show`); a ``state``
    value is coloured on a terminal."""
    width = max(len(key) for key, _ in pairs)
    return "\n".join(f"{key.ljust(width)}  {state(cell(value)) if key == 'state' else cell(value)}"
                     for key, value in pairs)


def emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2))


def emit(text: str) -> None:
    typer.echo(text)


def note(text: str) -> None:
    """A message for the person at the terminal, never part of the data on stdout."""
    typer.echo(text, err=True)
