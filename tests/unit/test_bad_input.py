"""Bad input and runtime faults, one test per row of docs/reliability.md.

Bad input exits 2 with one `error:` line (and maybe a hint), never a traceback,
and leaves no run directory behind. Runtime faults exit 3 and leave the run
resumable. Models are the tiny random ones from conftest (fast); most rows fail
before any model loads.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pairscope.cli import app
from pairscope.pipeline.runs import is_run_dir, iter_records
from pairscope.schema import dump
from tests.conftest import REPO, data_dir

DATA = data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found")
USER_PROBE = REPO / "tests" / "fixtures" / "user_probe"


def cli(*args: object) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def no_traceback(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output


def error_line(result, code: int = 2) -> str:
    """The single `error:` line of a failed command (checked: exit code, no traceback)."""
    assert result.exit_code == code, result.output
    no_traceback(result)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


def warning_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


@pytest.fixture
def tiny(tiny_dirs, tmp_path):
    """Common arguments for a quick probe of the tiny pair (xstest, 2 samples)."""

    def args(*extra: object, base: Path | None = None, guide: Path | None = None) -> list:
        return [
            "probe",
            "--base",
            base or tiny_dirs["base"],
            "--guide",
            guide or tiny_dirs["guide"],
            "--data-dir",
            DATA,
            "--tasks",
            "xstest",
            "--limit",
            "2",
            "--max-new-tokens",
            "8",
            "--no-calibration",
            "--out",
            tmp_path / "run",
            *extra,
        ]

    return args


def edited_model(src: Path, dst: Path, edit) -> Path:
    """Copy a tiny model directory, change its weights with ``edit(model)``, save it."""
    import torch
    from transformers import AutoModelForCausalLM

    shutil.copytree(src, dst)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    with torch.no_grad():
        edit(model)
    model.save_pretrained(dst)
    return dst


# -- names ----------------------------------------------------------------------------------


def test_misspelt_method_suggests_the_close_name():
    line = error_line(cli("probe", "--method", "nudgng"))
    assert "Unknown probe method 'nudgng'. Did you mean 'nudging'?" in line


def test_misspelt_method_in_evaluate_suggests_the_close_name():
    line = error_line(cli("evaluate", "--method", "base,blendn"))
    assert "'blendn'" in line and "Did you mean 'blendin'?" in line


def test_misspelt_task_suggests_the_close_name():
    line = error_line(cli("probe", "--tasks", "gsm8kk"))
    assert "Unknown task 'gsm8kk'. Did you mean 'gsm8k'?" in line


@needs_data
def test_missing_model_directory(tiny, tmp_path):
    result = cli(*tiny(base=tmp_path / "nosuchdir" / "x"))
    line = error_line(result)
    assert "Model directory not found" in line and "nosuchdir" in line
    assert not (tmp_path / "run").exists()  # nothing is created for bad input


@needs_data
def test_unknown_hub_id_offline(tiny, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)  # fail fast instead of retrying
    result = cli(*tiny(base="nosuchdir/x"))
    line = error_line(result)
    assert "Could not load the tokenizer of 'nosuchdir/x'" in line
    assert "looked up as a Hub id" in result.stderr
    assert not (tmp_path / "run").exists()


@needs_data
def test_unknown_embedded_model(tiny):
    line = error_line(cli(*tiny(guide="embedded:smollm2")))
    assert "Unknown embedded model 'embedded:smollm2'" in line


@needs_data
def test_unknown_device(tiny):
    line = error_line(cli(*tiny("--device", "cuda0")))
    assert "Unknown device 'cuda0'. Did you mean 'cuda'?" in line


@needs_data
def test_unknown_dtype(tiny):
    line = error_line(cli(*tiny("--dtype", "bfloat")))
    assert "Unknown dtype 'bfloat'. Did you mean 'bfloat16'?" in line


@needs_data
def test_cuda_requested_without_a_cuda_device(tiny):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = error_line(cli(*tiny("--device", "cuda")))
    assert "--device cuda was requested but no CUDA device is available" in line


def test_manifest_file_missing(tmp_path):
    line = error_line(cli("probe", "--manifest", tmp_path / "manifest.json"))
    assert "Manifest file not found" in line


# -- numbers out of range --------------------------------------------------------------------


def test_negative_tau():
    assert "--tau must be >= 0 (got -0.1)" in error_line(cli("probe", "--tau", "-0.1"))


@pytest.mark.parametrize("alpha", ["1.5", "-0.2"])
def test_alpha_outside_unit_interval(alpha):
    line = error_line(cli("evaluate", "--alpha", alpha))
    assert "--alpha must be 'auto' or a number in [0, 1]" in line


def test_alpha_not_a_number():
    line = error_line(cli("evaluate", "--alpha", "half"))
    assert "--alpha must be 'auto' or a number in [0, 1] (got 'half')" in line


def test_blend_alpha_outside_unit_interval():
    line = error_line(cli("evaluate", "--method", "blend:1.5"))
    assert "1.5" in line


def test_negative_lambda():
    assert "--lambda must be >= 0 (got -0.5)" in error_line(cli("probe", "--lambda", "-0.5"))


def test_k_below_one():
    assert "--k must be >= 1 (got 0)" in error_line(cli("probe", "--k", "0"))


@pytest.mark.parametrize("n", ["0", "-3"])
def test_n_not_positive(n):
    assert f"-n/--limit must be >= 1 or 'all' (got {n})" in error_line(cli("probe", "--limit", n))


def test_n_not_a_number():
    line = error_line(cli("probe", "--limit", "ten"))
    assert "-n/--limit must be a positive integer or 'all' (got 'ten')" in line


@pytest.mark.parametrize("threshold", ["1.5", "-0.1"])
def test_threshold_outside_unit_interval(threshold):
    line = error_line(cli("probe", "--threshold", threshold))
    assert "The IR threshold must be in [0, 1]" in line


def test_batch_size_below_one():
    assert "--batch-size must be >= 1" in error_line(cli("probe", "--batch-size", "0"))


def test_max_new_tokens_below_one():
    assert "--max-new-tokens must be >= 1" in error_line(cli("probe", "--max-new-tokens", "0"))


# -- probes and data -------------------------------------------------------------------------


def user_probe(tmp_path: Path) -> Path:
    folder = tmp_path / "probe"
    shutil.copytree(USER_PROBE, folder)
    return folder / "arithmetic.yaml"


def test_probe_yaml_with_an_unknown_key(tmp_path):
    probe = user_probe(tmp_path)
    probe.write_text(probe.read_text() + "colour: red\n")
    line = error_line(cli("probe", "--tasks", probe))
    assert "is invalid: field 'colour': Extra inputs are not permitted" in line


def test_probe_yaml_that_is_not_yaml(tmp_path):
    probe = user_probe(tmp_path)
    probe.write_text("name: [unclosed\n")
    assert "is not valid YAML" in error_line(cli("probe", "--tasks", probe))


def test_probe_file_missing(tmp_path):
    line = error_line(cli("probe", "--tasks", tmp_path / "nothing.yaml"))
    assert "Probe file not found" in line


def test_data_file_missing(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    result = cli("probe", "--tasks", "gsm8k", "--data-dir", empty, "--out", tmp_path / "run")
    line = error_line(result)
    assert "Data file for probe 'gsm8k' not found" in line
    assert "--data-dir" in result.stderr  # the hint says how to supply it
    assert not (tmp_path / "run").exists()


@needs_data
def test_data_file_with_a_wrong_checksum(tmp_path):
    assert DATA is not None
    copy = tmp_path / "data" / "gsm8k" / "test.jsonl"
    copy.parent.mkdir(parents=True)
    copy.write_bytes((DATA / "gsm8k" / "test.jsonl").read_bytes().replace(b"apples", b"pears", 1))
    line = error_line(cli("probe", "--tasks", "gsm8k", "--data-dir", tmp_path / "data"))
    assert "has sha256" in line and "the file is altered or a different version" in line


def test_empty_dataset(tmp_path):
    probe = user_probe(tmp_path)
    (probe.parent / "arithmetic.jsonl").write_text("")
    line = error_line(cli("probe", "--tasks", probe))
    assert "arithmetic.jsonl for probe 'tiny-arithmetic' is empty" in line


def test_n_larger_than_the_dataset_is_clamped_with_a_warning(tiny_dirs, tmp_path):
    probe = user_probe(tmp_path)
    result = cli(
        "probe",
        "--base",
        tiny_dirs["base"],
        "--guide",
        tiny_dirs["guide"],
        "--tasks",
        probe,
        "--limit",
        "10",
        "--max-new-tokens",
        "4",
        "--no-calibration",
        "--out",
        tmp_path / "run",
    )
    assert result.exit_code in (0, 1), result.output
    no_traceback(result)
    assert "warning: Requested n=10 but the dataset has 6 samples; using all." in result.stderr
    gens = [dump(r) for r in iter_records(tmp_path / "run") if r.kind == "generation"]
    assert len(gens) == 6


# -- models that are odd, not broken ---------------------------------------------------------


@needs_data
def test_guide_without_a_chat_template_warns_and_falls_back(tiny, tiny_dirs, tmp_path):
    guide = tmp_path / "guide"
    shutil.copytree(tiny_dirs["guide"], guide)
    (guide / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((guide / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (guide / "tokenizer_config.json").write_text(json.dumps(config))
    result = cli(*tiny(guide=guide))
    assert result.exit_code in (0, 1), result.output
    no_traceback(result)
    assert any(
        "has no chat template; using the plain template" in w for w in warning_lines(result)
    ), result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["pair"]["guide"]["chat_template"] is False


@needs_data
def test_prompt_longer_than_the_context_window_is_truncated_with_a_warning(
    tiny_dirs, tmp_path, tiny
):
    base = tmp_path / "short-base"
    shutil.copytree(tiny_dirs["base"], base)
    config = json.loads((base / "config.json").read_text())
    config["max_position_embeddings"] = 64
    (base / "config.json").write_text(json.dumps(config))
    # gsm8k's few-shot prompt is far longer than 64 tokens; calibration on, so the
    # teacher-forced prompts are cut too.
    args = tiny(base=base)
    args[args.index("xstest")] = "gsm8k"
    args.remove("--no-calibration")
    result = cli(*args)
    assert result.exit_code in (0, 1), result.output
    no_traceback(result)
    cut = [
        w
        for w in warning_lines(result)
        if "does not fit" in w
        and "context window of 64" in w
        and "truncating it from the left" in w
    ]
    assert len(cut) == 4, result.stderr  # 2 samples x (decoding, teacher forcing) of the base
    kinds = [r.kind for r in iter_records(tmp_path / "run")]
    assert kinds.count("generation") == 2 and kinds.count("calibration") == 4


@needs_data
def test_a_model_that_ends_at_once_gives_an_empty_response_not_a_fault(tiny, tiny_dirs, tmp_path):
    eos = 2

    def always_eos(model) -> None:
        # Zero every residual update, make every embedding point along dimension 0 and
        # let only the EOS row of the head read it: EOS wins at every position.
        for name, param in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                param.zero_()
        embed = model.get_input_embeddings().weight
        embed.zero_()
        embed[:, 0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[eos, 0] = 10.0

    base = edited_model(tiny_dirs["base"], tmp_path / "mute-base", always_eos)
    # The position protocol lets the base open the response; the reference protocol opens
    # every response with a guide round, so its responses are never empty.
    result = cli(*tiny("--protocol", "position", base=base))
    assert result.exit_code == 0, result.output  # IR = 0: an empty answer is a finding
    no_traceback(result)
    gens = [dump(r) for r in iter_records(tmp_path / "run") if r.kind == "generation"]
    assert len(gens) == 2
    assert all(g["text"] == "" and g["stop_reason"] == "eos" for g in gens)
    assert all(g["positions"] == 1 and g["uncertain"] == 0 for g in gens)


# -- runtime faults ---------------------------------------------------------------------------


@needs_data
def test_nan_logits_are_a_runtime_fault_and_the_run_stays_resumable(tiny, tiny_dirs, tmp_path):
    def poison(model) -> None:
        model.lm_head.weight.fill_(float("nan"))

    base = edited_model(tiny_dirs["base"], tmp_path / "nan-base", poison)
    result = cli(*tiny(base=base))
    line = error_line(result, code=3)
    assert "NaN" in line
    assert f"--resume {tmp_path / 'run'}" in result.stderr
    assert is_run_dir(tmp_path / "run")
    assert [r.kind for r in iter_records(tmp_path / "run")] == ["session"]
    # Resuming runs into the same fault again: still exit 3, still one line.
    again = cli(*tiny(base=base), "--resume", tmp_path / "run")
    assert "NaN" in error_line(again, code=3)


def oom_engine(monkeypatch, fail_when) -> list[int]:
    """Make Engine.run_batch raise out-of-memory when ``fail_when(call, rows)``; log batch sizes."""
    from pairscope.decoding.engine import Engine

    calls: list[int] = []
    original = Engine.run_batch

    def run_batch(self, indexed, waiting=None):
        calls.append(len(indexed))
        error = fail_when(len(calls), len(indexed))
        if error is not None:
            raise error
        return original(self, indexed, waiting)

    monkeypatch.setattr(Engine, "run_batch", run_batch)
    return calls


@needs_data
@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError(),
        "torch.OutOfMemoryError",
    ],
)
def test_out_of_memory_on_a_batch_retries_with_a_smaller_batch(tiny, tmp_path, monkeypatch, error):
    import torch

    if error == "torch.OutOfMemoryError":
        error = torch.cuda.OutOfMemoryError("CUDA out of memory.")
    # n = 4 at batch size 2: the first batch finishes, the second runs out of memory once.
    calls = oom_engine(monkeypatch, lambda call, rows: error if call == 2 else None)
    args = tiny("--batch-size", "2")
    args[args.index("--limit") + 1] = "4"
    result = cli(*args)
    assert result.exit_code in (0, 1), result.output
    no_traceback(result)
    assert calls == [2, 2, 1, 1]
    assert any(
        "Out of memory decoding xstest with nudging at batch size 2; retrying the 2 unfinished "
        "samples at batch size 1." in w
        for w in warning_lines(result)
    ), result.stderr
    gens = [dump(r) for r in iter_records(tmp_path / "run") if r.kind == "generation"]
    assert len({r["sample_id"] for r in gens}) == len(gens) == 4


@needs_data
def test_out_of_memory_at_batch_size_one_is_a_runtime_fault(tiny, tmp_path, monkeypatch):
    calls = oom_engine(monkeypatch, lambda call, rows: RuntimeError("CUDA out of memory"))
    result = cli(*tiny("--batch-size", "2"))
    line = error_line(result, code=3)
    assert "Out of memory decoding xstest with nudging even at batch size 1" in line
    assert calls == [2, 1]
    assert f"--resume {tmp_path / 'run'}" in result.stderr
    assert is_run_dir(tmp_path / "run")


@needs_data
def test_an_error_that_is_not_out_of_memory_is_not_retried(tiny, tmp_path, monkeypatch):
    calls = oom_engine(monkeypatch, lambda call, rows: RuntimeError("shape mismatch"))
    result = cli(*tiny("--batch-size", "2"))
    assert result.exit_code == 3
    no_traceback(result)
    assert "runtime failure: RuntimeError: shape mismatch" in result.stderr
    assert calls == [2]


# -- run directories -------------------------------------------------------------------------


def test_resume_a_directory_that_is_not_a_run(tmp_path):
    line = error_line(cli("probe", "--resume", tmp_path))
    assert f"--resume {tmp_path}: not a pairscope run directory" in line


def test_out_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    line = error_line(cli("probe", "--tasks", "gsm8k", "--out", tmp_path))
    assert "exists and is not a pairscope run; refusing to write into it" in line
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
