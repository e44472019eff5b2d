"""Run configuration: built from the command line in one call; a probe file's own seed
and n apply unless given on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from pairscope.cli import app, given_fields
from pairscope.config import from_cli
from pairscope.errors import InputError
from pairscope.spec import RunSpec

USER_PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "user_probe" / "arithmetic.yaml"


def options(command: str, *args: str) -> RunSpec:
    """What `pairscope COMMAND ARGS` would run with, from the real parser."""
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    ctx = cmd.make_context(command, list(args))
    return from_cli(command, ctx.params, given_fields(ctx))  # type: ignore[arg-type]


def test_probe_options_map_every_renamed_parameter():
    opts = options(
        "probe", "--method", "blendin", "--fixed", "--no-calibration", "--out", "x",
        "--tasks", "gsm8k, xstest", "--limit", "all", "--lambda", "0.3",
    )  # fmt: skip
    assert opts.methods == ("blendin",) and opts.sequential is False
    assert opts.calibration is False and opts.out == "x"
    assert opts.tasks == ("gsm8k", "xstest") and opts.n == "all" and opts.lam == 0.3
    assert opts.given == {"methods", "sequential", "calibration", "out", "tasks", "n", "lam"}


def test_defaults_leave_seed_and_n_to_the_probe_file():
    opts = options("probe")
    assert opts.seed is None and opts.n is None and opts.sequential and opts.calibration
    assert opts.methods == ("nudging",) and opts.given == frozenset()


def test_a_probe_files_seed_and_n_apply_unless_given():
    from pairscope.preflight import load_tasks

    def chosen(*args: str) -> tuple[int, int]:
        opts = options("probe", "--tasks", str(USER_PROBE), *args)
        data = load_tasks(opts, {})["tiny-arithmetic"]
        return len(data.samples), data.manifest.seed

    assert chosen() == (4, 7)  # the file's n: 4 and seed: 7
    assert chosen("--limit", "2") == (2, 7)
    assert chosen("--seed", "3") == (4, 3)


def test_evaluate_options_parse_alpha_and_methods():
    opts = options("evaluate", "--method", "base,blendin", "--alpha", "0.25")
    assert opts.methods == ("base", "blendin") and opts.alpha == 0.25
    assert opts.calibration is False and options("evaluate").alpha is None
    with pytest.raises(InputError, match="--alpha"):
        options("evaluate", "--alpha", "half")


def test_probe_refuses_a_method_it_cannot_gate_on():
    with pytest.raises(InputError, match="nudgng"):
        options("probe", "--method", "nudgng")
