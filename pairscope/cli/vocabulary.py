"""One flag vocabulary for every command, and the old spellings it replaced.

The vocabulary (docs/cli.md lists it for users):

* ``--json`` is a switch: the command's result as JSON on stdout, and nothing else there.
* ``--json-out PATH`` writes that JSON to a file; other formats name theirs the same
  way by format: ``--markdown PATH``, ``--junit PATH``.
* ``--out DIR`` is a run directory (rank's: its rank directory); ``-o/--output FILE``
  is the one file a command writes (an HTML report, a JSONL of results).
* ``-n/--limit N`` caps samples (or transcripts) per task; ``all`` lifts the cap (rank's
  budget is a number).
* ``--method`` names the decoding method (comma-separated where a command takes several).
* ``-h/--help`` everywhere; every help ends with the command's exit codes.

:class:`Command` and :class:`Group` are the Typer classes every command is built with:
they name each value by a placeholder (``PATH``, ``INTEGER``) instead of a Python type,
and they accept the old spellings (:data:`RENAMED`) for one release, each with a
one-line deprecation warning on stderr.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from typer.core import TyperCommand, TyperGroup

_err = Console(stderr=True)

# Old spelling -> (new spelling, the commands that had the old one). A new spelling of
# None: the old switch only restated the default and is dropped.
RENAMED: dict[str, tuple[str | None, frozenset[str]]] = {
    "--n": ("--limit", frozenset({"probe", "evaluate", "show", "rank"})),
    "--batch": ("--race-batch", frozenset({"rank"})),
    "--max-samples": ("--limit", frozenset({"report"})),
    "--methods": ("--method", frozenset({"evaluate"})),
    "--report": ("--json-out", frozenset({"score"})),
    "--out": ("--output", frozenset({"report", "compare"})),
    "--no-strict": (None, frozenset({"probe", "evaluate"})),
    "--no-plain": (None, frozenset({"generate"})),
}
# Commands whose --json took a file ('-' for stdout) before it became a switch.
JSON_TOOK_A_PATH = frozenset({"probe", "evaluate"})
# Placeholders by value type, for options that do not name their own.
_PLACEHOLDER = {int: "INTEGER", float: "FLOAT", str: "TEXT"}

HELP_OPTION_NAMES = ["-h", "--help"]


def _placeholder(param: Any) -> str:
    """A value's placeholder: PATH, INTEGER, FLOAT or TEXT (Typer's parameters carry
    their annotation; click's a type)."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:
        name = str(getattr(getattr(param, "type", None), "name", "text"))
        return {"integer": "INTEGER", "float": "FLOAT", "path": "PATH"}.get(name, "TEXT")
    if getattr(descriptor, "is_path", False):
        return "PATH"
    annotation = descriptor.annotation
    kinds = [a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None)]
    return _PLACEHOLDER.get(kinds[0], "TEXT") if len(kinds) == 1 else "TEXT"


def _is_option(param: Any) -> bool:
    return param.param_type_name == "option"


def _name_placeholders(params: list[Any]) -> None:
    for param in params:
        if param.metavar is not None:
            continue
        if not _is_option(param):
            param.metavar = (param.name or "value").upper()
            # The name is the placeholder; no type column beside it.
            param.display_type_rich = lambda ctx: None  # type: ignore[attr-defined]
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        else:
            param.metavar = _placeholder(param)


def _option_names(command: Any) -> set[str]:
    return {
        name
        for param in command.params
        if _is_option(param)
        for name in (*param.opts, *param.secondary_opts)
    }


def _warn(old: str, new: str | None) -> None:
    use = f"use {new}" if new else "it is the default; leave it out"
    _err.print(
        f"[yellow]warning:[/] {old} is deprecated and goes in the next release: {use}.",
        highlight=False,
        soft_wrap=True,
    )


def modernize(command: Any, args: list[str]) -> list[str]:
    """``args`` with the old spellings :data:`RENAMED` (and a legacy ``--json PATH``)
    rewritten to the current ones, warning once per old spelling used."""
    names = _option_names(command)
    result: list[str] = []
    warned: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            result += args[i - 1 :]
            break
        flag, eq, value = arg.partition("=")
        new, commands = RENAMED.get(flag, (None, frozenset()))
        if command.name in commands and flag not in names:
            if flag not in warned:
                _warn(flag, new)
                warned.add(flag)
            if new is not None:
                result.append(new + eq + value)
            continue
        if flag == "--json" and command.name in JSON_TOOK_A_PATH:
            # --json used to take a file ('-' for stdout); it is a switch now.
            path = value if eq else (args[i] if i < len(args) else None)
            if path is not None and (path == "-" or not path.startswith("-")):
                i += 0 if eq else 1
                if "--json PATH" not in warned:
                    _warn("--json PATH", "--json for stdout, --json-out PATH for a file")
                    warned.add("--json PATH")
                result += ["--json"] if path == "-" else ["--json-out", path]
                continue
        result.append(arg)
    return result


class _InVocabulary:
    """What both classes add: ``-h``, and placeholders instead of types."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = dict(kwargs.pop("context_settings", None) or {})
        settings.setdefault("help_option_names", HELP_OPTION_NAMES)
        super().__init__(*args, context_settings=settings, **kwargs)  # type: ignore[call-arg]
        _name_placeholders(self.params)  # type: ignore[attr-defined]

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class Command(_InVocabulary, TyperCommand):
    """A Typer command in the vocabulary: placeholders, ``-h``, old spellings."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, modernize(self, args))


class Group(_InVocabulary, TyperGroup):
    """The Typer group in the vocabulary: placeholders and ``-h``."""
