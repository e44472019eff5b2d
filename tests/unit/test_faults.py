"""Fault injection: what a careless or unlucky user does, and what pairscope promises then.

One test per fault (docs/reliability.md names each). None of these loads a model: where
a fault must be caught before the models load, ``load_pair`` is replaced by a function
that fails the test if it is ever called. The faults that need a model are in
tests/tiny/test_faults_tiny.py.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pairscope.cli import app
from pairscope.errors import RunDirError
from pairscope.pipeline.runs import RECORDS, RunDir, is_run_dir
from pairscope.pipeline.spec import RunSpec, from_record
from tests.conftest import REPO, data_dir

ARITHMETIC = REPO / "tests" / "fixtures" / "user_probe" / "arithmetic.yaml"
DATA = data_dir()


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(result, *needles: str) -> str:
    """The one `error:` line of an exit-2 refusal, checked to name every needle."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_models(monkeypatch):
    """Fail the test if a command loads a model (the fault must be caught before)."""

    def load_pair(*args: object, **kwargs: object):
        raise AssertionError("the models were loaded")

    monkeypatch.setattr("pairscope.models.load_pair", load_pair)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def make_run(path: Path) -> RunDir:
    """A run directory of the arithmetic fixture probe, as `probe` creates it (lock held)."""
    name = "tiny-arithmetic"  # the probe's own name, threshold and max_new_tokens
    spec = RunSpec(
        tasks=(str(ARITHMETIC),),
        n=2,
        task_names=(name,),
        thresholds={name: 0.3},
        max_new={name: 64},
    )
    return RunDir.create(path, spec)


# -- 1. a folder that is not a run is never touched -------------------------------------------


@pytest.mark.parametrize("force", [True, False])
def test_a_model_folder_is_not_a_run_and_is_left_byte_identical(tmp_path, no_models, force):
    folder = tmp_path / "hf-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 32}))
    (folder / "model.safetensors").write_bytes(os.urandom(4096))
    before = snapshot(folder)
    args = ["probe", "--tasks", ARITHMETIC, "--out", folder, *(["--force"] if force else [])]
    refused(cli(*args), "is not a pairscope run")
    assert snapshot(folder) == before
    assert not is_run_dir(folder)
    refused(cli("probe", "--tasks", ARITHMETIC, "--resume", folder), "not a pairscope run")
    assert snapshot(folder) == before


# -- 2. every number finite and in range -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("probe", "--tau", "nan"), "--tau"),
        (("probe", "--tau", "inf"), "--tau"),
        (("probe", "--lambda", "nan"), "--lambda"),
        (("generate", "--prompt", "x", "--tau", "nan"), "--tau"),
        (("generate", "--prompt", "x", "--lambda", "inf"), "--lambda"),
        (("probe", "--seed", "-1"), "--seed"),
    ],
)
def test_nan_infinite_and_negative_numbers_are_refused(args, option, no_models):
    refused(cli(*args), option)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("probe", "--lambda", "-inf"), "--lambda"),
        (("probe", "--threshold", "nan"), "threshold"),
        (("evaluate", "--alpha", "nan"), "--alpha"),
        (("evaluate", "--methods", "blend:nan"), "nan"),
    ],
)
def test_numbers_that_were_already_refused_stay_refused(args, option, no_models):
    refused(cli(*args), option)


# -- 3. a resume never mixes runs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tokenization", "own"),
        ("sequential", False),
        ("calibration", False),
        ("strict", True),
        ("min_calibration_samples", 5),
        ("data_dir", "/elsewhere"),
        ("policy", "mean"),
    ],
)
def test_resume_refuses_every_setting_that_changes_results(tmp_path, key, value):
    run = make_run(tmp_path / "run")
    run.close()
    settings = json.loads((run.path / "config.json").read_text())["settings"]
    with pytest.raises(RunDirError) as info:
        RunDir.resume(run.path, from_record({**settings, key: value}))
    assert f"{key}: run has" in info.value.message


def test_resume_allows_only_device_dtype_and_batch_size_to_change(tmp_path):
    run = make_run(tmp_path / "run")
    run.close()
    settings = json.loads((run.path / "config.json").read_text())["settings"]
    changed = {**settings, "device": "cuda", "dtype": "bfloat16", "batch_size": 3}
    RunDir.resume(run.path, from_record(changed)).close()


@pytest.mark.parametrize(
    ("extra", "option"), [(("--force",), "--force"), (("--manifest", "nowhere.json"), "--manifest")]
)
def test_options_a_resume_would_ignore_are_refused(tmp_path, no_models, extra, option):
    make_run(tmp_path / "run").close()
    result = cli("probe", "--resume", tmp_path / "run", *extra)
    refused(result, option, "--resume")


def test_resume_refuses_other_data_and_other_models(tmp_path):
    from pairscope.pipeline.preflight import (
        check_same_data,
        check_same_models,
        data_info,
        load_tasks,
    )
    from pairscope.pipeline.runs import read_config
    from pairscope.schema import RunConfig, dump

    run = make_run(tmp_path / "run")
    run.close()
    tasks = load_tasks(RunSpec(tasks=(str(ARITHMETIC),), n=2), {})
    identity = {
        "spec": "m",
        "kind": "dir",
        "sha256": "a" * 64,
        "architecture": "LlamaForCausalLM",
        "vocab_size": 640,
        "device": "cpu",
        "dtype": "float32",
        "chat_template": True,
    }
    old = RunConfig.model_validate(
        {
            **dump(read_config(run.path)),
            "data": data_info(tasks),
            "pair": {"base": identity, "guide": identity},
        }
    )
    check_same_data(run.path, old, tasks)  # the same data: fine
    name = next(iter(tasks))
    data = tasks[name]
    other = {name: replace(data, manifest=replace(data.manifest, data_sha256="x"))}
    with pytest.raises(RunDirError, match="data_fingerprint: run has"):
        check_same_data(run.path, old, other)

    class Model:
        def __init__(self, **change: object) -> None:
            self.change = change

        def identity(self) -> dict[str, object]:
            return {**identity, **self.change}

    class Pair:
        def __init__(self, base: Model) -> None:
            self.base, self.guide = base, Model()

    check_same_models(run.path, old, Pair(Model(device="cuda", dtype="bfloat16", path="/x")))
    with pytest.raises(RunDirError, match="base sha256: run has"):
        check_same_models(run.path, old, Pair(Model(sha256="b" * 64)))
    with pytest.raises(RunDirError, match="base revision: run has"):
        check_same_models(run.path, old, Pair(Model(revision="main")))


# -- 4. one writer per run directory ---------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, no_models):
    live = make_run(tmp_path / "run")  # this process holds the run, as a live probe would
    try:
        line = refused(cli("probe", "--resume", live.path), "in use", f"pid {os.getpid()}")
        assert "another pairscope process" in line
        result = cli("probe", "--tasks", ARITHMETIC, "-n", "2", "--out", live.path, "--force")
        refused(result, "in use", f"pid {os.getpid()}")
        assert (live.path / "config.json").is_file()
    finally:
        live.close()


def test_the_summary_refuses_duplicate_records(tmp_path):
    from pairscope.schema import dump
    from pairscope.summary import summarize
    from tests.unit.test_runs import gen

    run = make_run(tmp_path / "run")
    run.close()
    line = json.dumps(dump(gen("s1")))
    (run.path / RECORDS).write_text(line + "\n" + line + "\n")
    with pytest.raises(RunDirError, match="twice"):
        summarize(run.path)


# -- 5. exit codes that stay true ------------------------------------------------------------


@pytest.mark.parametrize("option", ["--json-out", "--markdown", "--junit"])
def test_an_unwritable_output_file_is_bad_input_before_the_models_load(tmp_path, no_models, option):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli("probe", "--tasks", ARITHMETIC, "--out", tmp_path / "run", option, blocker / "x")
    refused(result, option)
    assert not (tmp_path / "run").exists()


def test_an_out_under_a_file_is_bad_input_before_the_models_load(tmp_path, no_models):
    blocker = tmp_path / "file"
    blocker.write_text("")
    refused(cli("probe", "--tasks", ARITHMETIC, "--out", blocker / "run"), "--out", "is a file")


def test_report_and_compare_outputs_are_checked_first(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    refused(cli("report", tmp_path, "--output", blocker / "r.html"), "--output")
    refused(cli("compare", tmp_path, "--output", blocker / "c.html"), "--output")


@pytest.mark.parametrize("name", ["m[/]", "[pr-123]", "[link=http://x]m"])
def test_rich_markup_in_a_model_name_is_printed_as_text(tmp_path, no_models, monkeypatch, name):
    from pairscope.errors import ModelLoadError

    def load_pair(base: str, *args: object, **kwargs: object):
        raise ModelLoadError(f"Model directory not found or has no config.json: {base}")

    monkeypatch.setattr("pairscope.models.load_pair", load_pair)
    base = f"./{name}"
    result = cli("probe", "--tasks", ARITHMETIC, "--base", base, "--out", tmp_path / "run")
    refused(result, base)
    assert f"Loading models: base {base}" in result.stderr


def test_a_probe_file_that_is_not_utf8_is_bad_input(tmp_path, no_models):
    bad = tmp_path / "probe.yaml"
    bad.write_bytes(b"name: x\ndescription: \xff\xfe\n")
    refused(cli("probe", "--tasks", bad), "not UTF-8")


def test_a_damaged_run_manifest_is_bad_input(tmp_path, no_models):
    make_run(tmp_path / "run").close()
    (tmp_path / "run" / "manifest.json").write_bytes(b"\x00\xff{")
    refused(cli("probe", "--resume", tmp_path / "run"), "manifest.json")


def test_a_manifest_without_ids_is_bad_input(tmp_path, no_models):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"tiny-arithmetic": {"task": "tiny-arithmetic", "n": 2}}))
    result = cli("probe", "--tasks", ARITHMETIC, "--manifest", manifest, "--out", tmp_path / "r")
    refused(result, "Manifest", "keys")


@pytest.mark.parametrize(
    "row",
    [
        {"base_prompt": "a", "max_new_tokens": "many"},
        {"base_prompt": "a", "max_new_tokens": 2.5},
        {"base_prompt": "a", "stop": 5},
        {"base_prompt": "a", "guide_prompt": None},
        {"base_prompt": "a", "system": None},
        {"base_prompt": "a", "text": "a column named like a result field"},
    ],
)
def test_a_generate_row_of_the_wrong_type_is_bad_input_before_the_models_load(
    tmp_path, no_models, row
):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"base_prompt": "fine"}) + "\n" + json.dumps(row) + "\n")
    refused(cli("generate", "--input", src), "in.jsonl:2")


def test_generate_output_is_checked_before_the_models_load(tmp_path, no_models):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"base_prompt": "a"}) + "\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    refused(cli("generate", "--input", src, "--output", blocker / "out.jsonl"), "--output")


@pytest.mark.skipif(DATA is None, reason="offline benchmark copies not found")
def test_mc1_targets_labels_past_the_choices_are_bad_input(tmp_path):
    rows = tmp_path / "answers.jsonl"
    row = {"completion": "A", "mc1_targets": {"choices": ["a", "b"], "labels": [0, 0, 1]}}
    rows.write_text(json.dumps(row) + "\n")
    refused(cli("score", rows, "--task", "truthfulqa", "--data-dir", DATA), "answers.jsonl", "mc1")


# -- 6. served requests: a deadline, cancellation, malformed answers ---------------------------


class _Silent:
    """A server that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def close(self) -> None:
        self.sock.close()


def test_a_hanging_server_fails_a_request_by_its_deadline():
    from pairscope.backends.vllm_http import Client, Unreachable

    server = _Silent()
    client = Client(server.url, timeout=30.0, retries=5, deadline=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(Unreachable, match="deadline"):
            client.post("/completions", {})
        assert time.monotonic() - started < 5.0
    finally:
        client.close()
        server.close()


def test_cancel_ends_requests_in_flight_at_once():
    from pairscope.backends.vllm_http import Client, Unreachable

    server = _Silent()
    client = Client(server.url, timeout=60.0, retries=5, deadline=120.0)
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            client.post("/completions", {})
        except Unreachable as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask, name="pairscope-test") for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # the requests are in flight
    started = time.monotonic()
    client.cancel()
    for t in threads:
        t.join(timeout=10)
    try:
        assert time.monotonic() - started < 5.0
        assert not any(t.is_alive() for t in threads)
        assert len(errors) == 3 and all("cancelled" in str(e) for e in errors)
    finally:
        client.close()
        server.close()


def test_closing_a_served_model_does_not_wait_for_requests_in_flight():
    """Ctrl-C reaches ServedModel.close (the pipeline's finally, generate's with-block)."""
    from concurrent.futures import ThreadPoolExecutor

    from pairscope.backends.served import ServedModel
    from pairscope.backends.vllm_http import Client

    server = _Silent()
    model = object.__new__(ServedModel)
    model.client = Client(server.url, timeout=8.0, retries=0)
    model._pool_lock = threading.Lock()
    model._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pairscope-test")
    futures = [model._pool.submit(model.client.post, "/completions", {}) for _ in range(2)]
    time.sleep(0.5)  # the requests are in flight
    started = time.monotonic()
    try:
        model.close()
        assert time.monotonic() - started < 5.0
        assert all(f.done() for f in futures)
    finally:
        server.close()


@pytest.mark.parametrize("tops", [[None], ["not a table"], [{"token_id:1": {"x": 1}}]])
def test_a_malformed_served_answer_is_refused(tops):
    from pairscope.backends.vllm_answers import choice_positions

    choice = {
        "logprobs": {"tokens": ["token_id:1"], "token_logprobs": [-0.1], "top_logprobs": tops}
    }
    with pytest.raises(ValueError):
        choice_positions(choice, lambda key: int(key.split(":")[1]))


def test_the_served_error_names_the_request():
    from types import SimpleNamespace

    from pairscope.backends.served import ServedModel
    from pairscope.errors import RuntimeFault

    model = object.__new__(ServedModel)
    model.client = SimpleNamespace(base_url="http://127.0.0.1:9/v1")  # type: ignore[assignment]
    model.card = SimpleNamespace(id="guide-model")  # type: ignore[assignment]
    model.keys = lambda key: 1  # type: ignore[assignment]
    choice = {"logprobs": {"tokens": ["a"], "token_logprobs": [-0.1], "top_logprobs": [None]}}
    with pytest.raises(RuntimeFault) as info:
        model._parse(choice)
    assert "guide-model" in info.value.message and "/completions" in info.value.message


# -- 7. generate --input reads JSONL by \n only ----------------------------------------------


def test_generate_input_reads_lines_by_newline_only(tmp_path):
    from pairscope.pipeline.requests_file import read_requests

    src = tmp_path / "in.jsonl"
    rows = [{"base_prompt": "one\u2028two", "id": "a"}, {"base_prompt": "x\u0085y\u000cz", "id": 7}]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    read = read_requests(src, 8, (), None, "")
    assert [r.request.base_prompt for r in read] == ["one\u2028two", "x\u0085y\u000cz"]
    assert [r.columns for r in read] == [{"id": "a"}, {"id": 7}]


@pytest.mark.parametrize("sequential", [True, False])
def test_a_task_with_nothing_counted_is_not_a_pass(tmp_path, sequential):
    """0 rounds over 0 base tokens (the reference loop's guide ended every response in its
    first turn) is no rate at all: the task is WARN, and the pair cannot PASS overall on
    the strength of its other tasks."""
    from pairscope.schema import dump
    from pairscope.summary import summarize
    from tests.unit.test_runs import gen

    spec = RunSpec(
        tasks=("gsm8k", "xstest"),
        task_names=("gsm8k", "xstest"),
        n=3,
        thresholds={"gsm8k": 0.2, "xstest": 0.2},
        max_new={"gsm8k": 8, "xstest": 8},
        sequential=sequential,
    )
    run = RunDir.create(tmp_path / "run", spec)
    run.close()
    passing = [
        gen(f"g{i}").model_copy(update={"positions": 8, "ir_denominator": 8}) for i in range(3)
    ]
    nothing = [
        gen(f"x{i}").model_copy(
            update={
                "task": "xstest",
                "ir_numerator": 0,
                "ir_denominator": 0,
                "intervention_rate": None,
            }
        )
        for i in range(3)
    ]
    lines = [json.dumps(dump(r)) for r in passing + nothing]
    (run.path / RECORDS).write_text("\n".join(lines) + "\n")
    summary = summarize(run.path)
    xstest = summary.tasks["xstest"]
    assert xstest.methods["nudging"].intervention_rate is None
    assert xstest.verdict == "WARN"
    assert summary.overall.verdict != "PASS"
    if not sequential:
        assert "0/0" in xstest.reason
        assert summary.tasks["gsm8k"].verdict == "PASS"
