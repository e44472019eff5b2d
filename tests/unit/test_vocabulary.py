"""One flag vocabulary: every command's --help is walked and its shared flags checked,
and each old spelling still works for one release with a one-line deprecation warning."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pairscope.cli import app
from pairscope.cli.vocabulary import JSON_TOOK_A_PATH, RENAMED
from pairscope.defaults import BATCH_SIZE

ROOT = typer.main.get_command(app)


def _walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _walk(sub, (*path, name))
    return found


COMMANDS = _walk(ROOT)


def _command(path: tuple[str, ...]) -> Any:
    command = ROOT
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _options(path: tuple[str, ...]) -> dict[str, Any]:
    return {
        name: param
        for param in _command(path).params
        if param.param_type_name == "option"
        for name in (*param.opts, *param.secondary_opts)
    }


def _help(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def _id(path: tuple[str, ...]) -> str:
    return " ".join(path) or "pairscope"


def test_the_walk_finds_every_command():
    leaves = {p[-1] for p in COMMANDS if p}
    assert {"generate", "check", "probe", "evaluate", "report", "compare", "score"} <= leaves
    assert {"list", "show", "rank"} <= leaves


@pytest.mark.parametrize("path", COMMANDS, ids=_id)
def test_help_has_h_exit_codes_and_no_type_names(path):
    text = _help([*path, "-h"])
    assert text == _help([*path, "--help"])
    assert "Exit codes:" in text
    # Values are named by placeholders (PATH, N, MODEL), never by Python types.
    leaked = re.findall(r"<(?:str|int|float|bool|path|text|list\[[^\]]*\])>", text, re.I)
    assert not leaked, leaked


@pytest.mark.parametrize("path", [p for p in COMMANDS if p], ids=_id)
def test_shared_flags_follow_the_vocabulary(path):
    options = _options(path)
    retired = {"--n", "--max-samples", "--methods", "--report", "--no-strict", "--no-plain"}
    retired |= {"--batch"}
    assert not retired & set(options), "an old spelling is declared, not only aliased"
    if "--json" in options:
        assert options["--json"].is_flag, "--json is a switch: JSON on stdout"
    if "--json-out" in options:
        assert not options["--json-out"].is_flag and options["--json-out"].metavar == "PATH"
    if "--out" in options:
        assert options["--out"].metavar == "DIR", "--out is a run directory"
        assert path[-1] in ("probe", "evaluate", "rank")
    if "--output" in options:
        assert "-o" in options["--output"].opts and options["--output"].metavar == "FILE"
    if "--limit" in options:
        assert "-n" in options["--limit"].opts and options["--limit"].metavar == "N"
    if "--batch-size" in options:
        assert options["--batch-size"].default == BATCH_SIZE
    for param in set(options.values()):
        # A switch is one flag; no --x/--no-x pairs.
        assert not (param.is_flag and param.secondary_opts), param.opts
    if path[-1] in ("generate", "probe", "evaluate"):
        assert "--method" in options
    if "--base" in options and "--guides" in options:
        # Several guides (and bases): one revision flag could not say whose it is.
        assert {"--bases", "--device", "--dtype", "--trust-remote-code"} <= set(options)
    elif "--base" in options:
        models = {"--guide", "--device", "--dtype", "--trust-remote-code"}
        assert models | {"--base-revision", "--guide-revision"} <= set(options)


def test_shared_options_read_the_same_everywhere():
    helps: dict[str, set[str]] = {}
    for path in COMMANDS:
        for name, param in _options(path).items():
            if name in ("--base", "--guide", "--device", "--dtype", "--tasks", "--data-dir"):
                helps.setdefault(name, set()).add(param.help)
    assert helps and all(len(texts) == 1 for texts in helps.values()), helps


def _parse(path: tuple[str, ...], args: list[str]) -> dict[str, Any]:
    command = _command(path)
    with command.make_context(path[-1], list(args)) as ctx:
        return dict(ctx.params)


ALIASES = [
    (old, new, name)
    for old, (new, commands) in sorted(RENAMED.items())
    for name in sorted(commands)
]
PATHS = {p[-1]: p for p in COMMANDS if p}
VALUES = {
    "--limit": "3",
    "--method": "base,nudging",
    "--json-out": "r.json",
    "--output": "x.html",
    "--race-batch": "5",
}


@pytest.mark.parametrize(("old", "new", "name"), ALIASES, ids=lambda v: str(v))
def test_an_old_spelling_still_works_with_one_warning(old, new, name, capsys):
    path = PATHS[name]
    required = ["RUN"] if name in ("report", "compare") else []
    required += ["gsm8k"] if name == "show" else []
    required += ["f.jsonl", "--task", "gsm8k"] if name == "score" else []
    if new is None:
        assert _parse(path, [*required, old]) == _parse(path, required)
    else:
        value = VALUES[new]
        assert _parse(path, [*required, old, value]) == _parse(path, [*required, new, value])
        assert _parse(path, [*required, f"{old}={value}"]) == _parse(path, [*required, new, value])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "deprecated" in ln]
    # One line per use, naming the new spelling; never on the new spelling alone.
    assert len(lines) == (1 if new is None else 2)
    assert old in lines[0] and (new or "default") in lines[0]


@pytest.mark.parametrize("name", sorted(JSON_TOOK_A_PATH))
def test_the_old_json_path_form_maps_to_json_out(name, capsys):
    path = PATHS[name]
    assert _parse(path, ["--json", "s.json"])["json_out"] == Path("s.json")
    assert _parse(path, ["--json=s.json"])["json_out"] == Path("s.json")
    old_stdout = _parse(path, ["--json", "-", "--limit", "2"])
    assert old_stdout["as_json"] is True and old_stdout["n"] == "2"
    assert len([ln for ln in capsys.readouterr().err.splitlines() if "deprecated" in ln]) == 3
    # The new switch alone, before another option, is no old form.
    new = _parse(path, ["--json", "--limit", "2"])
    assert new["as_json"] is True and new["json_out"] is None and new["n"] == "2"
    assert "deprecated" not in capsys.readouterr().err


def test_an_old_spelling_is_not_rewritten_where_it_never_existed():
    # generate never had --out; it is an unknown option there, not an alias of --output.
    result = CliRunner().invoke(app, ["generate", "--out", "x"])
    assert result.exit_code == 2 and "No such option" in result.output
