"""Rendering results: one JSON document, or a plain aligned table that golden files can pin."""

from __future__ import annotations

import json
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


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns separated by two spaces, each as wide as its widest cell; no trailing blanks."""
    text_rows = [[cell(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in text_rows)])
              for i, header in enumerate(headers)]
    lines = []
    for row in [list(headers), *text_rows]:
        lines.append("  ".join(value.ljust(width) for value, width in zip(row, widths,
                                                                          strict=True)).rstrip())
    return "\n".join(lines)


def emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2))


def emit(text: str) -> None:
    typer.echo(text)


def note(text: str) -> None:
    """A message for the person at the terminal, never part of the data on stdout."""
    typer.echo(text, err=True)
