"""A model served by vLLM (OpenAI-compatible server) behind the local stream contract.

Spec: ``vllm:http://HOST:PORT/v1`` (the server's only model) or
``vllm:http://HOST:PORT/v1#NAME`` (one of the names ``/v1/models`` lists). A URL
without a path gets ``/v1``. ``https`` works too; ``VLLM_API_KEY`` is sent as a
bearer token when set (the variable vLLM's own ``--api-key`` reads).

Next-token distributions. The engine calls ``stream.forward({row: ids})`` and
reads the returned ``[rows, vocab]`` logprobs with max/argmax/top-k/indexing. A
served stream sends each row's *full* token-id list as the prompt of
``/v1/completions`` (a list of ints, so the server never re-tokenises text; its
prefix cache makes the repeated prefix cheap) with ``max_tokens=1``,
``temperature=0``, ``logprobs=k`` and ``return_tokens_as_token_ids=true``, and
fills a dense float32 tensor that is -inf except at the top-k ids (and the
sampled id). The values are log-probabilities of the *full* distribution (vLLM
returns raw logprobs, before sampling parameters) and are not renormalised, so
max, argmax and the top-k are exactly the local ones; NUDGING and BlendIn read
nothing else, so the -inf tail changes no decision.

Without token ids (``return_tokens_as_token_ids`` unknown to an older or
non-vLLM server) the keys are decoded strings. Ids that decode to the same string
then collide in the server's JSON object: one entry survives, holding one id's
logprob, not their sum. pairscope maps each string back to an id through the
local tokenizer (the id the tokenizer itself encodes the string to, else the
lowest id with that text), warns once at load time, and the parity numbers in
docs/vllm.md no longer apply.

Top-k cap. vLLM rejects ``logprobs`` above its ``--max-logprobs`` (default 20)
with HTTP 400. pairscope needs k = 100 (BlendIn's top-100; overlap@50), so it
checks at load time and stops with exit 2 and the fix ("restart the server with
``--max-logprobs 100``") instead of silently lowering k. ``PAIRSCOPE_SERVED_LOGPROBS=N``
asks for fewer on purpose (with a warning).

Tokenizer. It is loaded locally from the served model's name (``id`` in
``/v1/models``) and, failing that, its ``root`` (the path vLLM loaded): whichever is
a local directory or a Hub id. Serve with ``--served-model-name`` set to such a
name when the server's path does not exist here.

Calibration (teacher forcing) uses ``echo=true``: the prompt's own top-k
logprobs, which always include the actual prompt token's logprob.

Throughput and failures. Rows of one call go out as concurrent requests (a thread pool,
``PAIRSCOPE_SERVED_CONCURRENCY``, default 8, each thread with its own keep-alive
connection). Connection errors, timeouts, 429 and 5xx are retried with exponential
backoff (5 retries); ``PAIRSCOPE_SERVED_DEADLINE`` (default 180 s) bounds a request,
retries included, and ``PAIRSCOPE_SERVED_TIMEOUT`` (default 300 s) each attempt. Ctrl-C
fails the requests in flight at once. Where the engine follows a model's greedy path (a
confident base, the guide spelling out a NUDGING word), a request asks for up to
``PAIRSCOPE_SERVED_LOOKAHEAD`` tokens (default 16; 1 turns it off) and later contexts on
that path are answered without a request (see :class:`ServedStream`).
An unreachable server at load time raises ``ModelLoadError`` (exit 2, nothing
started); a failure mid-run raises
``RuntimeFault`` (exit 3; the run resumes with ``--resume``).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from pairscope.backends.base import ModelSource, Prompts
from pairscope.backends.vllm_answers import (
    GreedyPath,
    ServedCard,
    TokenKeys,
    choice_positions,
    completion_body,
    dense_logprobs,
    ordered_choices,
)
from pairscope.backends.vllm_connect import (
    DEFAULT_LOGPROBS,
    ENV_LOGPROBS,
    RESTART_HINT,
    connect,
)
from pairscope.backends.vllm_http import (
    DEFAULT_DEADLINE,
    DEFAULT_TIMEOUT,
    Client,
    ServerError,
    Unreachable,
    env_number,
    is_logprobs_cap,
    parse_spec,
)
from pairscope.errors import RuntimeFault
from pairscope.runtime.scores import Scores
from pairscope.runtime.stream import common_prefix

DEFAULT_CONCURRENCY = 8
DEFAULT_LOOKAHEAD = 16  # greedy tokens per request where the engine follows a greedy path
ENV_TIMEOUT = "PAIRSCOPE_SERVED_TIMEOUT"
ENV_DEADLINE = "PAIRSCOPE_SERVED_DEADLINE"
ENV_CONCURRENCY = "PAIRSCOPE_SERVED_CONCURRENCY"
ENV_LOOKAHEAD = "PAIRSCOPE_SERVED_LOOKAHEAD"


# -- the model --------------------------------------------------------------------------------


class ServedModel(Prompts):
    """A model whose forward passes run on a vLLM server, behind the backend interface
    (``backends/base.py``). The tokenizer is local; streams, teacher forcing and option
    probabilities are requests (the methods below).
    """

    device = "vllm"
    dtype = "served"

    def __init__(
        self,
        *,
        source: ModelSource,
        tokenizer: Any,
        client: Client,
        card: ServedCard,
        tokenizer_source: str,
        vocab_size: int,
        logprobs: int,
        token_ids: bool,
        eos_ids: frozenset[int],
        load_seconds: float,
        concurrency: int,
        server_version: str | None = None,
        lookahead: int = 1,
    ) -> None:
        self.source = source
        self.tokenizer = tokenizer
        self.load_seconds = load_seconds
        self.eos_ids = eos_ids
        self.client = client
        self.card = card
        self.tokenizer_source = tokenizer_source
        self.vocab_size = vocab_size
        self.logprobs = logprobs
        self.token_ids = token_ids
        self.concurrency = concurrency
        self.lookahead = lookahead
        self.server_version = server_version
        self.keys = TokenKeys(tokenizer)
        self.requests = 0
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def context_window(self) -> int | None:
        return self.card.max_model_len

    def new_stream(self, batch: int, lookahead: int = 1) -> ServedStream:
        """A stream whose requests ask for up to ``lookahead`` greedy tokens at once
        (capped by ``PAIRSCOPE_SERVED_LOOKAHEAD``)."""
        return ServedStream(self, batch, max(1, min(lookahead, self.lookahead)))

    def forcer(self, prompts: Sequence[Sequence[int]] = ()) -> ServedForcer:
        """Teacher forcing through the server (its prefix cache reuses shared prompts)."""
        return ServedForcer(self)

    def identity(self) -> dict[str, Any]:
        return {
            **self.source.to_dict(),
            "architecture": "served:vllm",
            "served_model": self.card.id,
            "served_root": self.card.root,
            "server_version": self.server_version,
            "tokenizer": self.tokenizer_source,
            "vocab_size": self.vocab_size,
            "max_model_len": self.card.max_model_len,
            "logprobs_k": self.logprobs,
            "token_ids": self.token_ids,
            "device": self.device,
            "dtype": self.dtype,
            "chat_template": self.has_chat_template,
        }

    # -- calls ------------------------------------------------------------------------------

    def next_logprobs(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Next-token logprobs ``[len(prompts), vocab]`` (top-k exact, -inf elsewhere)."""
        if not prompts:
            return torch.empty((0, self.vocab_size))
        return self._dense([path.positions[0] for path in self.greedy_paths(prompts, 1)])

    def greedy_paths(self, prompts: Sequence[Sequence[int]], steps: int) -> list[GreedyPath]:
        """Each prompt's greedy continuation of up to ``steps`` tokens (fewer at an
        end-of-sequence) with the top-k logprobs at every position; one request per
        group of prompts, the groups sent concurrently."""
        per = math.ceil(len(prompts) / self.concurrency)
        chunks = [list(prompts[i : i + per]) for i in range(0, len(prompts), per)]

        def ask(chunk: list[Sequence[int]]) -> list[dict[str, Any]]:
            return self._complete(chunk, echo=False, logprobs=self.logprobs, max_tokens=steps)

        if len(chunks) == 1:
            answers = [ask(chunks[0])]
        else:
            answers = list(self._executor().map(ask, chunks))
        paths = []
        for prompt, choice in zip(prompts, (c for answer in answers for c in answer)):
            positions = self._parse(choice)
            if not positions:
                raise RuntimeFault(f"The vLLM server returned no tokens for {self.card.id}.")
            raw = choice["logprobs"].get("tokens") or []
            tokens = [self.keys(t) if isinstance(t, str) else None for t in raw]
            paths.append(GreedyPath(list(prompt), tokens, positions))
        return paths

    def forced_logprobs(self, prompt: Sequence[int], reference: Sequence[int]) -> torch.Tensor:
        """Teacher forcing: logprobs ``[len(reference), vocab]`` at each reference token.

        Row t is the distribution after ``prompt + reference[:t]``; it holds the top-k
        and always the reference token itself (vLLM's prompt logprobs, via ``echo``).
        """
        if not reference:
            return torch.empty((0, self.vocab_size))
        if not prompt:
            raise RuntimeFault("Teacher forcing needs a non-empty prompt.")
        start = len(prompt)
        ids = list(prompt) + list(reference)
        [choice] = self._complete([ids], echo=True, logprobs=self.logprobs)
        return self._dense(self._parse(choice, start, start + len(reference), echo=True))

    def candidate_logprobs(self, prompt: Sequence[int], candidates: Sequence[int]) -> list[float]:
        """Exact next-token logprob of each candidate id after ``prompt`` (one request)."""
        if not candidates:
            return []
        prompts = [list(prompt) + [int(c)] for c in candidates]
        choices = self._complete(prompts, echo=True, logprobs=1)
        out = []
        for choice, cand in zip(choices, candidates):
            [entry] = self._parse(choice, len(prompt), len(prompt) + 1, echo=True)
            out.append(entry.get(int(cand), -math.inf))
        return out

    def close(self) -> None:
        """Stop the request threads and close every connection; requests still in flight
        (Ctrl-C, a failure) end at once. Idempotent; a later call opens new ones."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            self.client.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()

    def __enter__(self) -> ServedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.concurrency, thread_name_prefix="pairscope-vllm"
                )
            return self._pool

    def _complete(
        self, prompts: Sequence[Sequence[int]], *, echo: bool, logprobs: int, max_tokens: int = 1
    ) -> list[dict[str, Any]]:
        """POST /completions; map failures to RuntimeFault (the run stays resumable)."""
        body = completion_body(
            self.card.id,
            prompts,
            logprobs=logprobs,
            echo=echo,
            token_ids=self.token_ids,
            max_tokens=max_tokens,
        )
        where = self._where
        self.requests += 1
        try:
            answer = self.client.post("/completions", body)
            return ordered_choices(answer, len(prompts))
        except Unreachable as exc:
            raise RuntimeFault(
                f"Lost {where}: {exc}",
                hint="Check that the server is running and reachable.",
            ) from None
        except ServerError as exc:
            hint = RESTART_HINT if is_logprobs_cap(exc.message) else None
            raise RuntimeFault(f"{where} refused a request: {exc}", hint=hint) from None
        except ValueError as exc:
            raise RuntimeFault(f"Unexpected answer from {where}: {exc}") from None

    def _parse(
        self, choice: dict[str, Any], start: int = 0, stop: int | None = None, echo: bool = False
    ) -> list[dict[int, float]]:
        try:
            return choice_positions(choice, self.keys, start, stop, echo=echo)
        except ValueError as exc:
            raise RuntimeFault(
                f"Unexpected answer from {self._where} to POST /completions: {exc}"
            ) from None

    @property
    def _where(self) -> str:
        return f"the vLLM server at {self.client.base_url} ({self.card.id})"

    def _dense(self, positions: Sequence[dict[int, float]]) -> torch.Tensor:
        if any(v != v for entry in positions for v in entry.values()):  # NaN
            raise RuntimeFault(f"The vLLM server returned NaN logprobs for {self.card.id}.")
        try:
            out = dense_logprobs(positions, self.vocab_size)
        except ValueError as exc:
            raise RuntimeFault(
                f"{self.card.id}: {exc}.",
                hint="Serve the same model whose tokenizer pairscope loads (see docs/vllm.md).",
            ) from None
        return out


class ServedForcer:
    """Teacher forcing through a server's prompt logprobs (``echo``): each position holds
    the top-k and the reference token, so confidence (max) and correctness (argmax)
    are exact. The most recent answer is kept (calibration and the arbitration check
    force the same reference)."""

    def __init__(self, lm: ServedModel) -> None:
        self.lm = lm
        self._last: tuple[tuple[tuple[int, ...], tuple[int, ...]], torch.Tensor] | None = None

    def scores(self, prompt: Sequence[int], reference: Sequence[int]) -> torch.Tensor:
        if not reference:
            return torch.empty((0, 0))
        key = (tuple(prompt), tuple(reference))
        if self._last is None or self._last[0] != key:
            self._last = (key, self.lm.forced_logprobs(prompt, reference))
        return self._last[1]

    def next_probs(self, prompt: Sequence[int], wanted: Sequence[int]) -> dict[int, float]:
        values = self.lm.candidate_logprobs(prompt, list(wanted))
        return {int(t): math.exp(v) for t, v in zip(wanted, values)}


class ServedStream:
    """The :class:`~pairscope.runtime.stream.ModelStream` contract over a served model.

    Nothing is cached on the server's behalf: every request sends the row's full ids
    and the server's prefix cache reuses the common prefix. With ``lookahead`` n > 1
    a request asks for n greedy tokens (``max_tokens=n``) with the top-k at each, as
    NUDGING's reference asks for 16-token chunks; while a row's later contexts stay
    on that path (it keeps the model's own top-1, as a confident base does, or the
    guide spells out its word) their distributions are answered from it with no
    request. A row that leaves the path (an intervention) simply asks again: a path
    is only ever used for exactly the context it was computed for, so the results
    equal one request per token. ``fed_tokens`` counts the ids beyond each row's
    previous ids (what a local stream would have fed); ``answered_ahead`` counts the
    distributions served from paths.
    """

    # The engine brings every guide row up to date on a local stream; here that would
    # be a request per row, so it asks only for the rows it needs.
    sync_all_rows = False
    # No cache to copy: the server's prefix cache shares prompt prefixes.
    can_fork = False

    def fork(self, batch: int) -> ServedStream:
        raise TypeError("A served stream has no cache to fork.")

    def __init__(self, lm: ServedModel, batch: int, lookahead: int = 1) -> None:
        if lookahead < 1:
            raise ValueError("lookahead must be >= 1")
        self.lm = lm
        self.lookahead = lookahead
        self.rows: list[list[int]] = [[] for _ in range(batch)]
        self.paths: list[GreedyPath | None] = [None] * batch
        self.fed_tokens = 0
        self.answered_ahead = 0

    def select(self, keep: list[int]) -> None:
        """Keep only the rows ``keep`` (in that order)."""
        self.rows = [self.rows[i] for i in keep]
        self.paths = [self.paths[i] for i in keep]

    def admit(self, prompts: list[list[int]], prefix: Any = None) -> None:
        """Add an empty row for each prompt (each request sends its whole context)."""
        self.rows.extend([] for _ in prompts)
        self.paths.extend(None for _ in prompts)

    def scores(self, targets: dict[int, list[int]], read: Sequence[int] | None = None) -> Scores:
        """:meth:`forward` of the rows ``read`` alone (None: all), normalised already."""
        return Scores(self.forward({r: targets[r] for r in (targets if read is None else read)}))

    def forward(self, targets: dict[int, list[int]]) -> torch.Tensor:
        """Next-token logprobs ``[len(targets), vocab]`` for each named row, in order."""
        order = list(targets)
        if not order:
            return torch.empty((0, 0))
        found: dict[int, dict[int, float]] = {}
        asking = []
        for r in order:
            want = list(targets[r])
            if not want:
                raise RuntimeFault("A model was asked to continue an empty context.")
            self.fed_tokens += len(want) - min(common_prefix(self.rows[r], want), len(want) - 1)
            self.rows[r] = want
            path = self.paths[r]
            hit = path.lookup(want) if path is not None else None
            if hit is None:
                asking.append(r)
            else:
                found[r] = hit
                self.answered_ahead += 1
        if asking:
            paths = self.lm.greedy_paths([self.rows[r] for r in asking], self.lookahead)
            for r, path in zip(asking, paths):
                self.paths[r] = path
                found[r] = path.positions[0]
        return self.lm._dense([found[r] for r in order])


# -- loading ----------------------------------------------------------------------------------


def load_served(spec: str, *, trust_remote_code: bool = False) -> ServedModel:
    """Connect to a vLLM server, load the tokenizer locally, and check the logprobs cap.

    Raises:
        ModelLoadError: unreachable server, unknown model, no tokenizer, a top-logprobs
            cap below what pairscope asks for, or an answer pairscope cannot read.
    """
    started = time.perf_counter()
    parsed = parse_spec(spec)
    timeout = env_number(ENV_TIMEOUT, DEFAULT_TIMEOUT, 1)
    deadline = env_number(ENV_DEADLINE, DEFAULT_DEADLINE, 1)
    concurrency = int(env_number(ENV_CONCURRENCY, DEFAULT_CONCURRENCY, 1))
    lookahead = int(env_number(ENV_LOOKAHEAD, DEFAULT_LOOKAHEAD, 1))
    k = int(env_number(ENV_LOGPROBS, DEFAULT_LOGPROBS, 1))
    key = os.environ.get("VLLM_API_KEY")
    client = Client(parsed.url, timeout=timeout, deadline=deadline, api_key=key)
    try:
        facts = connect(spec, parsed, client, k, trust_remote_code)
        return ServedModel(
            source=ModelSource(spec, "vllm", parsed.url),
            tokenizer=facts.tokenizer,
            client=client,
            card=facts.card,
            tokenizer_source=facts.tokenizer_source,
            vocab_size=facts.vocab_size,
            logprobs=k,
            token_ids=facts.token_ids,
            eos_ids=facts.eos_ids,
            load_seconds=time.perf_counter() - started,
            concurrency=concurrency,
            lookahead=lookahead,
            server_version=facts.server_version,
        )
    except BaseException:
        client.close()  # a load that fails leaves no connection open
        raise


__all__ = ["ServedForcer", "ServedModel", "ServedStream", "load_served"]
