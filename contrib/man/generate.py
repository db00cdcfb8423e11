#!/usr/bin/env python3
"""Write contrib/man/vfpool.1: the vfpool(1) man page, from vfpool's typer command tree.

Every command, with its usage line, help text, arguments, options (metavar, default, whether
required, environment variable) and examples, comes from the click command tree that typer
builds; the exit codes come from vfpool.errors. Only the FILES and SEE ALSO sections are
written here by hand. The page is deterministic (no date), so a test can keep it current.

    .venv/bin/python contrib/man/generate.py            # rewrite the file
    .venv/bin/python contrib/man/generate.py --check    # exit 1 if it is stale
    .venv/bin/python contrib/man/generate.py --stdout
    make contrib                                        # this, the completion and the units
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "vfpool.1"
REGENERATE = ".venv/bin/python contrib/man/generate.py"
_EXAMPLE = re.compile(r"^Examples?:\s*(.*)$", re.S)

FILES = [
    ("/var/lib/vfpool/vfpool.db", "The store (SQLite) of root, unless --db or VFPOOL_DB says "
                                  "otherwise."),
    ("$XDG_STATE_HOME/vfpool/vfpool.db", "The store of other users "
                                         "(~/.local/state/vfpool/vfpool.db by default)."),
    ("DIR/vfpool.db", "The store of the simulated host in DIR (--sim DIR)."),
    ("/run/vfpool/", "Locks: one for PF changes, one per VF, one per process acquiring leases."),
    ("/etc/modprobe.d/vfpool-MODULE.conf", "The max_vfs options of the module-param method."),
]
SEE_ALSO = ["systemd.exec(5)", "systemd-analyze(1)", "modprobe(8)", "ip-link(8)",
            "qemu-system-x86_64(1)"]
UNITS = ("The units vfpool-autostart.service (pool start --autostarted, then reconcile, at "
         "boot) and vfpool-watch.service (watch) are written for an installation by "
         "\\fBvfpool contrib systemd\\fR.")


def text(value: str) -> str:
    """Running text for roff: backslashes and hyphens escaped, no line starting a request."""
    value = value.replace("\\", "\\e").replace("-", "\\-")
    value = "".join(char if ord(char) < 128 else f"\\[u{ord(char):04X}]" for char in value)
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in value.split("\n"))


def _paragraphs(help_text: str) -> tuple[list[str], list[str]]:
    """The prose paragraphs (each joined onto one line) and the example command lines."""
    prose: list[str] = []
    examples: list[str] = []
    for block in re.split(r"\n\s*\n", help_text.strip()):
        block = block.strip("\n")
        raw = block.removeprefix("\b\n")  # click's marker of a block not to rewrap
        found = _EXAMPLE.match(raw.strip())
        if found:
            examples += [line.strip() for line in found[1].splitlines() if line.strip()]
        elif raw != block:
            prose.append(raw)
        else:
            prose.append(" ".join(line.strip() for line in block.splitlines()))
    return prose, examples


def _default(param: Any) -> str | None:
    default = param.default
    if (param.param_type_name != "option" or param.is_flag or callable(default)
            or default in (None, "", (), []) or param.show_default is False):
        return None
    return str(default)


def _metavar(param: Any) -> str:
    """The declared metavar, else the parameter's name in capitals (``--owner OWNER``): typer's
    own (``TEXT``, ``<str>``) changes between typer versions."""
    return str(param.metavar or param.name.upper())


def _param(param: Any) -> list[str]:
    """A .TP entry for one argument or option."""
    if param.param_type_name == "argument":
        head = f"\\fI{text(_metavar(param))}\\fR"
    else:
        names = ", ".join(f"\\fB{text(name)}\\fR" for name in param.opts)
        if param.secondary_opts:
            names += " | " + ", ".join(f"\\fB{text(n)}\\fR" for n in param.secondary_opts)
        head = names if param.is_flag or param.count else f"{names} \\fI{text(_metavar(param))}\\fR"
    notes = []
    if param.required:
        notes.append("required")
    default = _default(param)
    if default is not None:
        notes.append(f"default: {default}")
    if getattr(param, "envvar", None):
        notes.append(f"environment: {param.envvar}")
    body = getattr(param, "help", None) or ""
    if notes:
        body = (body + " " if body else "") + "(" + "; ".join(notes) + ")"
    return [".TP", head, text(body) if body else "\\&"]


def _usage(command: Any) -> str:
    """``[OPTIONS] ARG [OPT]... `` built here: typer's usage text differs between versions."""
    pieces = []
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    if command.add_help_option or any(p.param_type_name == "option" for p in params):
        pieces.append("[OPTIONS]")
    for param in params:
        if param.param_type_name != "argument":
            continue
        word = _metavar(param)
        if param.nargs == -1 and not word.endswith("..."):
            word += "..."
        pieces.append(word if param.required else f"[{word}]")
    if getattr(command, "commands", None):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _command(command: Any, ctx: Any, path: str, heading: str) -> list[str]:
    lines = [heading]
    usage = _usage(command)
    lines += [".PP", f"\\fB{text(path)}\\fR {text(usage)}".rstrip()]
    prose, examples = _paragraphs(command.help or "")
    for paragraph in prose:
        lines += [".PP", text(paragraph)]
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    if params:
        lines += [".PP", "Arguments and options:" if any(
            p.param_type_name == "argument" for p in params) else "Options:",
            ".RS 4"]
        for param in params:
            lines += _param(param)
        lines += [".RE"]
    if examples:
        lines += [".PP", "Example:" if len(examples) == 1 else "Examples:", ".RS 4", ".nf"]
        lines += [text(example) for example in examples]
        lines += [".fi", ".RE"]
    return lines


def _walk(command: Any, ctx: Any, path: str) -> list[str]:
    lines: list[str] = []
    for name in sorted(getattr(command, "commands", {})):
        sub = command.commands[name]
        if sub.hidden:
            continue
        sub_path = f"{path} {name}"
        # typer builds on click, or on the copy of click it ships (typer._click): take the
        # Context class from the command rather than import either.
        sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
        lines += _command(sub, sub_ctx, sub_path, f'.SS "{text(sub_path)}"')
        lines += _walk(sub, sub_ctx, sub_path)
    return lines


def _exit_codes() -> list[str]:
    """One entry per exit code, from the error classes of vfpool.errors and their docstrings
    (only that module's, so the page does not depend on what else happens to be imported)."""
    from vfpool import errors

    by_code: dict[int, list[str]] = {0: ["Success."]}
    classes = sorted((cls for cls in vars(errors).values() if isinstance(cls, type)
                      and issubclass(cls, errors.VfpoolError) and cls is not errors.VfpoolError
                      and cls.__module__ == errors.__name__), key=lambda cls: cls.__name__)
    for cls in classes:
        summary = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        by_code.setdefault(cls.exit_code, []).append(f"{cls.__name__}: {summary}")
    by_code.setdefault(errors.VfpoolError.exit_code, []).append(
        "Any other failure, and internal errors (bugs: --debug shows the traceback).")
    by_code.setdefault(130, []).append("Interrupted (SIGINT).")
    lines = [".SH EXIT STATUS",
             ".PP", "An error is one line on standard error that starts with "
                    "\\(lqerror:\\(rq. The exit code says what kind of error it was:"]
    for code in sorted(by_code):
        lines += [".TP", f"\\fB{code}\\fR", "\n.br\n".join(text(line) for line in by_code[code])]
    return lines


def render(root: Any) -> str:
    """The man page of the click command ``root`` (typer's command for vfpool's app)."""
    import vfpool

    ctx = root.context_class(root, info_name="vfpool")
    prose, examples = _paragraphs(root.help or "")
    summary = prose[0].split(":")[0] if prose else "vfpool"
    lines = [
        ".\\\" GENERATED by contrib/man/generate.py from vfpool's command tree; do not edit.",
        f".\\\" Regenerate with: {REGENERATE} (or: make contrib)",
        f'.TH VFPOOL 1 "" "vfpool {vfpool.__version__}" "vfpool manual"',
        ".nh",  # no hyphenation: option and command names must stay whole
        ".ad l",
        ".SH NAME",
        f"vfpool \\- {text(summary[0].lower() + summary[1:])}",
        ".SH SYNOPSIS",
        f"\\fBvfpool\\fR {text(_usage(root))}",
        ".SH DESCRIPTION",
    ]
    for paragraph in prose:
        lines += [".PP", text(paragraph)]
    lines += [".PP", "Every command works on the real host, or on a simulated one with "
                     "\\fB\\-\\-sim\\fR \\fIDIR\\fR. Commands that print data take "
                     "\\fB\\-\\-json\\fR, and every command takes \\fB\\-h\\fR (\\fB\\-\\-help\\fR)."]
    if examples:
        lines += [".PP", "Example:", ".RS 4", ".nf", *[text(e) for e in examples], ".fi", ".RE"]
    lines += [".SH GLOBAL OPTIONS", ".PP", "Given before or after the command.", ".RS 4"]
    for param in root.params:
        if not getattr(param, "hidden", False):
            lines += _param(param)
    lines += [".RE", ".SH COMMANDS"]
    lines += _walk(root, ctx, "vfpool")
    envvars = sorted((str(p.envvar), str(p.opts[0])) for p in root.params
                     if getattr(p, "envvar", None))
    if envvars:
        lines += [".SH ENVIRONMENT"]
        for name, option in envvars:
            lines += [".TP", f"\\fB{text(name)}\\fR", f"The default of \\fB{text(option)}\\fR."]
    lines += _exit_codes()
    lines += [".SH FILES"]
    for path, description in FILES:
        lines += [".TP", f"\\fI{text(path)}\\fR", text(description)]
    lines += [".SH SEE ALSO", ".PP", UNITS, ".PP",
              ",\n".join(f"\\fB{text(page.split('(')[0])}\\fR({page.split('(')[1]}"
                         for page in SEE_ALSO)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    group.add_argument("--stdout", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    import typer.main  # after argparse: --help must not need vfpool installed

    from vfpool.cli.main import app

    page = render(typer.main.get_command(app))
    if args.stdout:
        sys.stdout.write(page)
    elif args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != page:
            print(f"{OUTPUT} is stale; run {REGENERATE}", file=sys.stderr)
            return 1
    else:
        OUTPUT.write_text(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
