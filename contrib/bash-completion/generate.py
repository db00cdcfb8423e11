#!/usr/bin/env python3
"""Write contrib/bash-completion/vfpool: a static bash completion of vfpool's command tree.

The app disables typer's own completion (``add_completion=False``): that one calls back into
Python on every <TAB>, which costs the full import time of vfpool. This script walks the click
command tree that typer builds once and writes plain bash: commands, subcommands, options, the
choices of an option whose metavar lists them (``auto|sysfs|module-param``), and file or
directory names where an option or argument is a path. Pool names and lease ids come from the
store at <TAB> time, through ``python -m vfpool.complete`` (the stdlib's sqlite3, no
SQLAlchemy), run by the Python of the vfpool being completed.

    .venv/bin/python contrib/bash-completion/generate.py            # rewrite the file
    .venv/bin/python contrib/bash-completion/generate.py --check    # exit 1 if it is stale
    .venv/bin/python contrib/bash-completion/generate.py --stdout
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "vfpool"
# Every word that goes into the bash source must be plain: no quoting is ever needed.
_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")
_OPTION = re.compile(r"^--?[A-Za-z0-9][A-Za-z0-9-]*$")
_CHOICES = re.compile(r"^[a-z0-9-]+(\|[a-z0-9-]+)+$")


@dataclass
class Node:
    """One command path (``""`` is the top level) and what completes after it."""

    path: str
    commands: list[str] = field(default_factory=list)
    # Hidden commands (aliases such as ``pool info``): not offered, but their words complete.
    aliases: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    # option -> choice:…|file|dir|command|pool|lease|text
    values: dict[str, str] = field(default_factory=dict)
    # What completes each argument of a leaf command, in order: file|dir|pool|lease|text;
    # a trailing "+" repeats the last for the rest (nargs=-1).
    positional: list[str] = field(default_factory=list)


def _checked(word: str, pattern: re.Pattern[str]) -> str:
    if not pattern.match(word):
        raise SystemExit(f"error: {word!r} needs quoting in bash; extend the generator")
    return word


def _is_path(param: Any) -> bool:
    descriptor = getattr(param, "type_descriptor", None)  # typer >= 0.29
    if descriptor is not None:
        return getattr(descriptor, "annotation", None) is Path
    return type(getattr(param, "type", None)).__name__ == "Path"  # click's type


def _store_kind(path: str, param: Any) -> str | None:
    """``pool`` or ``lease`` when the value names a pool or a lease in the store."""
    metavar = (param.metavar or "").rstrip(".")
    if metavar == "POOL" or "--pool" in getattr(param, "opts", ()):
        return "pool"
    # The NAME of `pool start`, `pool show`, … is an existing pool; that of `pool define` is not.
    if path.startswith("pool ") and path != "pool define" and param.name == "name":
        return "pool"
    if metavar == "LEASE_ID":
        return "lease"
    return None


def _value_kind(path: str, param: Any) -> str:
    metavar = param.metavar or ""
    if _CHOICES.match(metavar):
        return "choice:" + " ".join(_checked(word, _WORD) for word in metavar.split("|"))
    if _is_path(param):
        return "dir" if metavar == "DIR" else "file"
    if metavar == "BINARY":
        return "command"
    return _store_kind(path, param) or "text"


def _argument_kind(path: str, param: Any) -> str:
    if _is_path(param):
        return "dir" if param.name == "directory" else "file"
    return _store_kind(path, param) or "text"


def walk(command: Any, path: str = "", ctx: Any = None) -> list[Node]:
    """The nodes of the command tree below ``command``, depth first, subcommands sorted.
    Hidden options are left out; hidden commands (aliases) are walked but not offered."""
    # typer builds on click, or on the copy of click it ships: take the Context class from
    # the command. The context carries the help option's names (-h, --help) down the tree.
    ctx = command.context_class(command, info_name=path.split(" ")[-1] or "vfpool", parent=ctx,
                                **command.context_settings)
    node = Node(path)
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "option":
            names = [_checked(name, _OPTION) for name in [*param.opts, *param.secondary_opts]]
            node.options += names
            if not (param.is_flag or param.count):
                for name in names:
                    node.values[name] = _value_kind(path, param)
        elif param.param_type_name == "argument":
            node.positional.append(_argument_kind(path, param) + ("+" if param.nargs == -1
                                                                  else ""))
    help_option = command.get_help_option(ctx)
    if help_option is not None:
        node.options += help_option.opts
    node.options = sorted(set(node.options))
    nodes = [node]
    subcommands = getattr(command, "commands", {})
    for name in sorted(subcommands):
        (node.aliases if subcommands[name].hidden else node.commands).append(
            _checked(name, _WORD))
        nodes += walk(subcommands[name], f"{path} {name}".strip(), ctx)
    return nodes


HEADER = """\
# bash completion for vfpool                                       -*- shell-script -*-
# GENERATED by contrib/bash-completion/generate.py from vfpool's typer command tree; do not
# edit. Regenerate with: .venv/bin/python contrib/bash-completion/generate.py
# Install: cp contrib/bash-completion/vfpool /usr/share/bash-completion/completions/vfpool
#     (or `source` it from ~/.bashrc).
"""

BODY = r"""
# Walk the words before the cursor: skip options and their values (noting --sim and --db),
# descend into subcommands, count the arguments of the command. Then complete an option's
# value, an option, a subcommand or the next argument.
_vfpool() {
    local cur prev word kind commands path="" sim="" db="" i=1 arg=0
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    COMPREPLY=()
    # COMP_WORDBREAKS splits "--opt=val" into "--opt" "=" "val".
    if [[ $cur == = ]]; then
        cur=""
    elif [[ $prev == = && $COMP_CWORD -ge 2 ]]; then
        prev=${COMP_WORDS[COMP_CWORD-2]}
    fi
    while ((i < COMP_CWORD)); do
        word=${COMP_WORDS[i]}
        if [[ $word == -- ]]; then
            # The rest is someone else's argv: QEMU's, for `vm launch`.
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur"))
            return 0
        elif [[ $word == -* ]]; then
            if _vfpool_value "$path" "$word" >/dev/null || _vfpool_value "" "$word" >/dev/null
            then
                i=$((i + 1))
                [[ ${COMP_WORDS[i]} == = ]] && i=$((i + 1))
                ((i < COMP_CWORD)) || break
                case $word in
                    --sim) sim=${COMP_WORDS[i]} ;;
                    --db) db=${COMP_WORDS[i]} ;;
                esac
            fi
        else
            commands="$(_vfpool_commands "$path") $(_vfpool_aliases "$path")"
            if [[ " $commands " == *" $word "* ]]; then
                path=${path:+$path }$word
            elif [[ -n ${commands// /} ]]; then
                return 0  # not a subcommand of this group: nothing completes after it
            else
                arg=$((arg + 1))
            fi
        fi
        i=$((i + 1))
    done
    if [[ $prev == -* ]] && { kind=$(_vfpool_value "$path" "$prev") ||
                              kind=$(_vfpool_value "" "$prev"); }; then
        _vfpool_complete_kind "$kind"
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_vfpool_options "$path")" -- "$cur"))
        return 0
    fi
    commands=$(_vfpool_commands "$path")
    if [[ -n $commands ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        return 0
    fi
    local kinds=($(_vfpool_positional "$path"))
    if ((arg < ${#kinds[@]})); then
        kind=${kinds[arg]}
    elif ((${#kinds[@]})) && [[ ${kinds[-1]} == *+ ]]; then
        kind=${kinds[-1]}
    else
        return 0
    fi
    _vfpool_complete_kind "${kind%+}"
    return 0
}

_vfpool_complete_kind() {
    case $1 in
        choice:*) COMPREPLY=($(compgen -W "${1#choice:}" -- "$cur")) ;;
        file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
        dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
        command) COMPREPLY=($(compgen -c -- "$cur")) ;;
        pool) COMPREPLY=($(compgen -W "$(_vfpool_store pools)" -- "$cur")) ;;
        lease) COMPREPLY=($(compgen -W "$(_vfpool_store leases)" -- "$cur")) ;;
    esac
}

# Names from the store (pools, or live lease ids), read by `python -m vfpool.complete` with
# the Python of the vfpool being completed (its #! line), on the store the words name.
_vfpool_store() {
    local exe line python
    exe=$(type -P -- "${COMP_WORDS[0]}") || return 0
    IFS= read -r line < "$exe" || return 0
    [[ $line == '#!'* ]] || return 0
    read -r -a python <<< "${line#'#!'}"
    [[ $sim == '~/'* ]] && sim=$HOME/${sim#'~/'}
    "${python[@]}" -m vfpool.complete "$1" ${sim:+--sim "$sim"} ${db:+--db "$db"} 2>/dev/null
}

complete -F _vfpool vfpool
"""


def _case(function: str, doc: str, arms: list[tuple[str, str]], default: str) -> str:
    lines = [f"# {doc}", f"{function}() {{", "    case $1 in"]
    lines += [f'        "{pattern}") {action} ;;' for pattern, action in arms]
    lines += [f"        *) {default} ;;", "    esac", "}", ""]
    return "\n".join(lines)


def render(root: Any) -> str:
    nodes = walk(root)
    commands = [(node.path, f'echo "{" ".join(node.commands)}"') for node in nodes
                if node.commands]
    options = [(node.path, f'echo "{" ".join(node.options)}"') for node in nodes]
    values = [(f"{node.path} {option}".strip(), f'echo "{kind}"')
              for node in nodes for option, kind in node.values.items()]
    aliases = [(node.path, f'echo "{" ".join(node.aliases)}"') for node in nodes if node.aliases]
    positional = [(node.path, f'echo "{" ".join(node.positional)}"') for node in nodes
                  if node.positional]
    # _vfpool_value matches "PATH OPTION"; at the top level the path is empty, hence the
    # leading space that bash's "$1 $2" produces.
    value_arms = [(f" {key}" if key.startswith("-") else key, action) for key, action in values]
    parts = [
        HEADER,
        _case("_vfpool_commands", "The subcommands of a command path (\"\" is the top level).",
              commands, ":"),
        _case("_vfpool_aliases", "Hidden commands (aliases) of a command path: not offered, "
              "but what follows them completes.", aliases, ":"),
        _case("_vfpool_options", "The options of a command path.", options, ":"),
        _case("_vfpool_value", "Options that take a value, and what completes the value; "
              "fails for the others.", value_arms, "return 1").replace(
                  "case $1 in", 'case "$1 $2" in'),
        _case("_vfpool_positional", "What completes each argument of a command, in order "
              "(a + repeats the last).", positional, ":"),
    ]
    return "\n".join(parts) + BODY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    group.add_argument("--stdout", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    import typer.main  # after argparse: --help must not need vfpool installed

    from vfpool.cli.main import app

    text = render(typer.main.get_command(app))
    if args.stdout:
        sys.stdout.write(text)
    elif args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale; run {Path(__file__).name}", file=sys.stderr)
            return 1
    else:
        OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
