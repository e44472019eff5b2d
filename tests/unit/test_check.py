"""`pairscope check` on tiny models built in fixtures (no downloads) and fake servers."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pairscope.check import check_pair, single_token_text, tokenizer_family
from pairscope.metrics.intervention import Verdict
from tests.conftest import CHAT_TEMPLATE, CORPUS, cli

EVERY_MODEL_CHECK = {
    "model files",
    "tokenizer family",
    "single-token spaces",
    "chat template",
    "end of sequence",
    "special tokens",
    "vocabulary size",
    "context window",
    "sliding window",
    "dtype on device",
}


def legacy_sentencepiece():
    """A Llama-2-legacy-style tokenizer: the normalizer adds the dummy prefix, the decoder
    strips one leading space, so ``decode([id('▁the')]) == 'the'``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False)
    # Train word by word (pieces start with '▁'), then run without a pre-tokenizer as
    # Llama-2's tokenizer.json does.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    tok.train_from_iterator(CORPUS.splitlines(), trainer)
    tok.pre_tokenizer = None
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def save_tiny(path: Path, tokenizer: Any, *, vocab_size: int | None = None, **config: Any) -> Path:
    """A two-layer Llama with this tokenizer, saved like save_pretrained does."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    settings = dict(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(LlamaConfig(**(settings | config)))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def legacy_dir(tmp_path_factory) -> Path:
    tok = legacy_sentencepiece()
    tok.chat_template = CHAT_TEMPLATE.replace("<|im_start|>", "<s>").replace("<|im_end|>", "</s>")
    return save_tiny(tmp_path_factory.mktemp("legacy"), tok)


def by_check(report, model: str) -> dict[str, Any]:
    return {item.check: item for item in report.items if item.model == model}


def test_a_decoder_that_strips_leading_spaces_is_flagged(legacy_dir, tiny_dirs):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(legacy_dir)
    assert tok.decode([tok.convert_tokens_to_ids("\u2581the")]) == "the"  # the premise
    raw, alone, added = single_token_text(tok)
    assert raw.startswith("\u2581") and added == " " + alone
    assert "legacy" in tokenizer_family(tok)
    report = check_pair(str(legacy_dir), str(tiny_dirs["guide"]), device="cpu")
    item = by_check(report, "base")["single-token spaces"]
    assert item.status is Verdict.WARN
    assert "decode([id('\u2581" in item.found and "strips a leading space" in item.found
    assert item.fix
    assert report.exit_code == 0  # a WARN is not a hard incompatibility
    guide = by_check(report, "guide")["single-token spaces"]
    assert guide.status is Verdict.PASS


def test_the_tiny_pair_reports_every_item(tiny_dirs):
    result = cli("check", "--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for model in ("base", "guide"):
        checks = {i["check"] for i in report["items"] if i["model"] == model}
        assert EVERY_MODEL_CHECK <= checks, EVERY_MODEL_CHECK - checks
    statuses = {(i["model"], i["check"]): i["status"] for i in report["items"]}
    assert statuses[("pair", "vocabulary overlap")] in ("PASS", "WARN")
    assert statuses[("guide", "chat template")] == "PASS"
    assert all(i["fix"] for i in report["items"] if i["status"] != "PASS")
    table = cli("check", "--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"])
    assert table.exit_code == 0 and "vocabulary overlap" in table.stdout


def test_a_guide_without_chat_template_gets_the_fallback(tmp_path, tiny_dirs):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dirs["guide"])
    tok.chat_template = None
    path = save_tiny(tmp_path / "plain", tok)
    (path / "chat_template.jinja").unlink(missing_ok=True)
    report = check_pair(str(tiny_dirs["base"]), str(path), device="cpu")
    item = by_check(report, "guide")["chat template"]
    assert item.status is Verdict.WARN and "User: {user}" in item.found


def test_a_tokenizer_larger_than_the_embedding_is_a_hard_failure(tmp_path, tiny_dirs):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dirs["guide"])
    path = save_tiny(tmp_path / "small", tok, vocab_size=len(tok) - 10)
    result = cli("check", "--base", tiny_dirs["base"], "--guide", path)
    assert result.exit_code == 2
    assert "FAIL" in result.output and "embedding rows" in result.output


def test_short_context_window_warns(tmp_path, tiny_dirs):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dirs["guide"])
    path = save_tiny(tmp_path / "short", tok, max_position_embeddings=256)
    report = check_pair(str(tiny_dirs["base"]), str(path), device="cpu")
    item = by_check(report, "guide")["context window"]
    assert item.status is Verdict.WARN and "gsm8k" in item.found


def test_missing_models_and_devices_fail_with_exit_2(tmp_path, tiny_dirs):
    result = cli("check", "--base", tmp_path / "nowhere", "--guide", tiny_dirs["guide"])
    assert result.exit_code == 2 and "nowhere" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    assert cli("check", "--base", empty, "--guide", tiny_dirs["guide"]).exit_code == 2
    import torch

    if not torch.cuda.is_available():
        result = cli(
            "check", "--base", tiny_dirs["base"], "--guide", tiny_dirs["guide"], "--device", "cuda"
        )
        assert result.exit_code == 2 and "dtype on device" in result.output
    report = check_pair(
        str(tiny_dirs["base"]), str(tiny_dirs["guide"]), device="cpu", dtype="float16"
    )
    assert by_check(report, "base")["dtype on device"].status is Verdict.WARN


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_served_model_is_exit_2_with_its_url(tiny_dirs):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    result = cli("check", "--base", tiny_dirs["base"], "--guide", f"vllm:{url}")
    assert result.exit_code == 2
    assert url in result.output.replace("\n", "")
    report = json.loads(
        cli("check", "--base", tiny_dirs["base"], "--guide", f"vllm:{url}", "--json").stdout
    )
    [server] = [i for i in report["items"] if i["check"] == "server"]
    assert server["status"] == "FAIL" and url in server["found"] and server["fix"]
    # The base is still checked in full.
    assert {i["check"] for i in report["items"] if i["model"] == "base"} >= EVERY_MODEL_CHECK


@pytest.fixture
def served_guide(tiny_dirs, tiny_pair) -> Iterator[Any]:
    from tests.served.test_served_parsing import fake_vllm_server

    with fake_vllm_server(tiny_dirs, tiny_pair) as server:
        yield server


def test_a_served_guide_is_checked_with_one_tiny_request(tiny_dirs, served_guide):
    report = check_pair(str(tiny_dirs["base"]), served_guide.spec, device="cpu")
    guide = by_check(report, "guide")
    assert guide["server"].status is Verdict.PASS and "fake" in guide["server"].found
    assert guide["top logprobs"].status is Verdict.PASS
    assert guide["context window"].found.startswith("2048 tokens")
    assert served_guide.requests == 1
    assert report.exit_code == 0


def test_a_served_logprobs_cap_below_100_fails_with_the_fix(tiny_dirs, served_guide):
    served_guide.max_logprobs = 20
    result = cli("check", "--base", tiny_dirs["base"], "--guide", served_guide.spec, "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    [cap] = [i for i in report["items"] if i["check"] == "top logprobs"]
    assert cap["status"] == "FAIL" and "--max-logprobs 100" in cap["fix"]


def test_check_reads_a_hub_model_at_the_revision_asked(monkeypatch):
    # Offline, the read fails (a FAIL item, exit 2); what matters is what it asked for.
    import pairscope.check.read as read_module

    asked: dict[str, str | None] = {}

    def spy(folder: str, kwargs: dict) -> None:
        asked[folder] = kwargs.get("revision")
        raise OSError("offline")

    monkeypatch.setattr(read_module, "_load_files", spy)
    result = cli("check", "--base", "org/base", "--guide", "org/guide", "--base-revision", "v1.0")
    assert result.exit_code == 2
    assert asked == {"org/base": "v1.0", "org/guide": None}
