"""Run configuration: built from the command line in one call; a probe file's own seed
and n apply unless given on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from pairscope.cli import app, given_fields
from pairscope.errors import InputError
from pairscope.pipeline.config import from_cli
from pairscope.pipeline.spec import RunSpec

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
    from pairscope.pipeline.preflight import load_tasks

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


# -- the config file: pairscope.toml, or [tool.pairscope] in pyproject.toml ---------------------


def test_a_config_file_sets_what_no_flag_gives(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairscope.toml").write_text(
        'tau = 0.3\ntasks = ["gsm8k", "xstest"]\nlimit = "all"\nmax-new-tokens = 12\n'
    )
    opts = options("probe")
    assert (opts.tau, opts.tasks, opts.n, opts.max_new_tokens) == (
        0.3, ("gsm8k", "xstest"), "all", 12,
    )  # fmt: skip
    assert opts.given == frozenset()  # the file's values are not flags: a resume keeps its own
    flagged = options("probe", "--tau", "0.5", "--tasks", "truthfulqa")
    assert flagged.tau == 0.5 and flagged.tasks == ("truthfulqa",) and flagged.n == "all"


def test_pyproject_tool_table_is_read_when_there_is_no_pairscope_toml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.pairscope]\nk = 7\n')
    assert options("evaluate").k == 7
    (tmp_path / "pairscope.toml").write_text("k = 9\n")
    assert options("evaluate").k == 9  # pairscope.toml first


def test_the_environment_outranks_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairscope.toml").write_text('data-dir = "from-file"\n')
    monkeypatch.delenv("PAIRSCOPE_DATA_DIR", raising=False)
    assert options("probe").data_dir == "from-file"
    monkeypatch.setenv("PAIRSCOPE_DATA_DIR", "from-env")
    assert options("probe").data_dir is None  # the probes read PAIRSCOPE_DATA_DIR, as before
    assert options("probe", "--data-dir", "flag").data_dir == "flag"


def test_a_setting_only_the_other_command_takes_is_left_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairscope.toml").write_text("alpha = 0.25\n")
    assert options("evaluate").alpha == 0.25
    assert options("probe").alpha is None


def test_a_resume_reads_no_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairscope.toml").write_text("tau = 0.3\n")
    assert options("probe", "--resume", "run").tau != 0.3


@pytest.mark.parametrize(
    ("name", "text", "needles"),
    [
        ("pairscope.toml", "tua = 0.3\n", ("pairscope.toml", "'tua'")),
        ("pyproject.toml", "[tool.pairscope]\nout = 'x'\n", ("pyproject.toml", "'out'")),
        ("pairscope.toml", "tau = 'high'\n", ("pairscope.toml", "tau")),
        ("pairscope.toml", "tau = \n", ("pairscope.toml", "not readable TOML")),
    ],
)
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path, monkeypatch, name, text, needles):
    from tests.conftest import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text(text)
    result = cli("probe", "--tasks", "gsm8k")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and all(n in lines[0] for n in needles), result.stderr
