"""Model loading from local directories, the Hub code path (offline, on local files), errors."""

from __future__ import annotations

import shutil

import pytest

from pairscope.errors import ModelLoadError
from pairscope.models import cache_dir, load_model


def test_local_directory_loads_with_identity(tiny_dirs):
    lm = load_model(str(tiny_dirs["guide"]), device="cpu", dtype="float32")
    ident = lm.identity()
    assert ident["kind"] == "local" and ident["chat_template"] is True
    assert len(ident["sha256"]) == 64
    # </s>, and <|im_end|>: the token the chat template puts after an assistant turn.
    assert lm.eos_ids == frozenset({2, 4})
    text = lm.chat_prompt_text("Hi?")
    assert "<|im_start|>user\nHi?<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


def test_hub_code_path_on_a_local_hub_cache(tiny_dirs, tmp_path, monkeypatch):
    """A Hub id resolves through huggingface_hub's cache layout, as it does after a download."""
    repo = tmp_path / "hub" / "models--tiny-org--tiny-base"
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_dirs["base"], snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    lm = load_model("tiny-org/tiny-base", device="cpu", dtype="float32")
    assert lm.source.kind == "hub"
    local = load_model(str(tiny_dirs["base"]), device="cpu", dtype="float32")
    assert lm.tokenizer.encode("Tom has 3 apples") == local.tokenizer.encode("Tom has 3 apples")


def test_unknown_hub_id_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError) as info:
        load_model("no-such-org/no-such-model", device="cpu")
    assert "no-such-org/no-such-model" in info.value.message
    assert info.value.hint


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("missing.gguf", "GGUF file not found"),
        ("./no/such/dir", "no config.json"),
        ("not a model", "not a model"),
        ("embedded:gemma-3-27m", "Did you mean 'embedded:gemma-3-270m'"),
    ],
)
def test_bad_model_specs(spec, needle):
    with pytest.raises(ModelLoadError, match=needle):
        load_model(spec, device="cpu")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PAIRSCOPE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"


def test_the_conversion_lock_excludes_another_process(monkeypatch, tmp_path):
    """Two processes converting into one empty cache: the second waits for the first."""
    import subprocess
    import sys
    import time

    from pairscope.models import _cache_lock

    monkeypatch.setenv("PAIRSCOPE_CACHE", str(tmp_path / "cache"))
    marks = tmp_path / "marks"
    holder = (
        "import pathlib, time\n"
        "from pairscope.models import _cache_lock\n"
        f"marks = pathlib.Path({str(marks)!r})\n"
        "with _cache_lock('k'):\n"
        "    marks.write_text('in')\n"
        "    time.sleep(1.0)\n"
        "    marks.write_text('out')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder])
    try:
        while not marks.exists():
            assert proc.poll() is None, "the lock holder died"
            time.sleep(0.02)
        with _cache_lock("k"):
            assert marks.read_text() == "out"  # acquired only after the holder let go
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == 0
