"""Shared fixtures: tiny random models with their own trained tokenizers, the real pair."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = (
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\n"
    "Answer: Tom has 3 + 5 = 8 apples. The answer is 8.\n\n"
    "The capital of France is Paris. The quick brown fox jumps over the lazy dog.\n"
    "I cannot help with that request, but I can tell you about safety. "
    "Let's think step by step about the numbers 12, 40 and 365 days in a year.\n"
) * 4


# Test files whose tests share only session fixtures (the real pair): under
# ``--dist loadgroup`` their tests spread over the workers one by one. Every other file
# stays whole on one worker (its module fixtures are built once), as ``loadfile`` does.
SPREAD = {"tests/real/test_engine_real.py", "tests/real/test_reference_loop.py"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path not in SPREAD and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(path))


def data_dir() -> Path | None:
    """The offline benchmark copies: PAIRSCOPE_DATA_DIR or shared/data beside the repo."""
    env = os.environ.get("PAIRSCOPE_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "gsm8k" / "test.jsonl").is_file():
            return c
    return None


def _tokenizer(family: str):
    """A small BPE tokenizer of one real family (tests/families.py) trained on CORPUS."""
    from tests.families import build

    return build(family, CORPUS, vocab_size=420 if family == "bytelevel" else 640)


# What the tiny Gemma 3 base and Llama guide share: two layers, width 32, one KV head.
TINY = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=2048,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)


def cli(*args: object):
    """Invoke the pairscope CLI in-process; fail on any exception but a clean exit."""
    from typer.testing import CliRunner

    from pairscope.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    return result


def chosen_samples(probe: str | Path, data: str | Path | None = None, **choice: Any):
    """(spec, samples in decoding order, manifest) of a probe, chosen as a run chooses
    them: load the probe and its data, build every sample, then ``choose``."""
    from pairscope.probes import build_samples, choose, load_dataset_records, load_probe

    spec = load_probe(probe)
    samples = build_samples(spec, load_dataset_records(spec, data))
    chosen, manifest = choose(spec, samples, **choice)
    return spec, chosen, manifest


def tiny_gemma3_config(vocab: int, sliding_window: int = 512):
    """A two-layer Gemma 3 text config: one sliding-window layer, one full layer."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=vocab,
        head_dim=16,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"],
        **TINY,
    )


def _tiny_model(kind: str, vocab: int, seed: int):
    import torch
    from transformers import Gemma3ForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if kind == "gemma3":
        model = Gemma3ForCausalLM(tiny_gemma3_config(vocab))
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **TINY))
    # Sharpen the random logits so greedy decoding is decisive and some positions are confident.
    with torch.no_grad():
        model.lm_head.weight.mul_(12.0)
    return model.eval()


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """Save a tiny random base (Gemma 3 architecture, Gemma-style SentencePiece BPE) and
    guide (Llama, byte-level BPE with a chat template) to local directories."""
    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for role, arch, kind, seed in (
        ("base", "gemma3", "gemma", 0),
        ("guide", "llama", "bytelevel", 1),
    ):
        tok = _tokenizer(kind)
        if role == "guide":
            tok.chat_template = CHAT_TEMPLATE
        model = _tiny_model(arch, len(tok), seed)
        model.generation_config.eos_token_id = tok.eos_token_id
        path = root / role
        model.save_pretrained(path)
        tok.save_pretrained(path)
        out[role] = path
    return out


@pytest.fixture(scope="session")
def tiny_pair(tiny_dirs):
    from pairscope.models import load_pair

    return load_pair(str(tiny_dirs["base"]), str(tiny_dirs["guide"]), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def real_pair():
    """The embedded real pair (slow: converts GGUF once into the cache)."""
    from pairscope.models import load_pair

    return load_pair(device="cpu", dtype="float32")


# -- fake servers and the threads of served models --------------------------------------------

# Threads started by served models (their request pool) and by the fake servers (accept loop,
# one handler per connection). A daemon thread still inside torch while the interpreter
# finalises is killed by pthread_exit unwinding through C++ (pybind11's GIL guard), which
# aborts the process: "terminate called without an active exception", exit 134.
SERVED_THREADS = ("pairscope-", "fake-server", "(process_request_thread)")


@contextmanager
def no_stray_threads() -> Iterator[None]:
    """Fail if a served-model or fake-server thread started in the block outlives it."""
    before = set(threading.enumerate())
    yield
    left = [
        t.name
        for t in threading.enumerate()
        if t not in before and any(mark in t.name for mark in SERVED_THREADS)
    ]
    assert not left, f"threads still running after the test: {left}"


class FakeServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 whose threads all end when it stops.

    Handler threads are not daemons: :meth:`stop` shuts down the connections clients left
    open (keep-alive), then ``server_close`` joins every handler, so no thread that ran a
    model survives its test.
    """

    daemon_threads = False
    block_on_close = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._loop = threading.Thread(target=self.serve_forever, name="fake-server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"

    @property
    def open_connections(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    @contextmanager
    def running(self) -> Iterator[FakeServer]:
        self._loop.start()
        try:
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        self.shutdown()
        self._loop.join()
        with self._connections_lock:
            still_open = list(self._connections)
        for sock in still_open:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a handler waiting for the next request
            except OSError:
                pass
        self.server_close()  # joins the handler threads


def pairscope_subprocess(*args: object, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pairscope ARGS`` in its own process, in development mode (which reports
    sockets left unclosed), and check that it ended without a C++ abort or a leak at exit."""
    env = {**os.environ, "PYTHONDEVMODE": "1"}
    cmd = [sys.executable, "-m", "pairscope", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    assert "terminate called" not in done.stderr, done.stderr[-3000:]
    assert done.returncode >= 0, f"killed by signal {-done.returncode}: {done.stderr[-3000:]}"
    assert "ResourceWarning" not in done.stderr, done.stderr[-3000:]
    return done


def load_script(name: str) -> Any:
    """A module of scripts/ (not a package), imported by its file name."""
    import importlib.util

    path = REPO / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module
