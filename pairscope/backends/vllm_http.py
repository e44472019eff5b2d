"""The HTTP side of a vLLM (OpenAI-compatible) server: the ``vllm:`` spec, error
messages, and a keep-alive client with retries (see ``backends/served.py``)."""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pairscope.errors import InputError, ModelLoadError

SPEC_PREFIX = "vllm:"
DEFAULT_TIMEOUT = 300.0  # seconds one attempt may wait for its answer
DEFAULT_DEADLINE = 180.0  # seconds a request may take in all, retries and back-off included
RETRIES = 5
BACKOFF = 0.5  # seconds before the first retry; doubles, capped at MAX_BACKOFF
MAX_BACKOFF = 8.0
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CAP = re.compile(r"max(?:imum)?[ _]?(?:allowed|logprobs)\D{0,24}(\d+)", re.IGNORECASE)


def env_number(name: str, default: float, minimum: float) -> float:
    """A numeric setting from the environment: finite and at least ``minimum``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{name}={raw!r} is not a number.") from None
    if not math.isfinite(value) or value < minimum:
        raise InputError(f"{name} must be a finite number >= {minimum:g} (got {raw}).")
    return value


@dataclass(frozen=True)
class ServedSpec:
    """A parsed ``vllm:`` spec: the API base URL (ending in /v1) and an optional model name."""

    url: str
    model: str | None = None


def parse_spec(spec: str) -> ServedSpec:
    """Parse ``vllm:http://host:port/v1[#name]``.

    Raises:
        ModelLoadError: not an http(s) URL with a host.
    """
    rest = spec[len(SPEC_PREFIX) :].strip()
    url, _, name = rest.partition("#")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelLoadError(
            f"'{spec}' is not a served-model spec: expected vllm:http://HOST:PORT/v1[#MODEL].",
            hint="For example --guide vllm:http://127.0.0.1:8000/v1",
        )
    path = parts.path.rstrip("/") or "/v1"
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return ServedSpec(url=base, model=name.strip() or None)


class ServerError(Exception):
    """The server answered with an HTTP error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Unreachable(Exception):
    """No usable answer after every retry (connection refused/reset, timeout, 5xx, 429)."""


def error_message(body: bytes | str) -> str:
    """The human message of an error answer: OpenAI's ``{"error": {"message"}}``, or the text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            for key in ("message", "detail"):
                if isinstance(err.get(key), str):
                    return str(err[key])
        elif isinstance(err, str):
            return err
        if isinstance(data.get("detail"), str):
            return str(data["detail"])
    return text.strip()[:500]


def is_logprobs_cap(message: str) -> bool:
    """Does this error say that more logprobs were asked for than the server allows?"""
    lowered = message.lower()
    return "logprob" in lowered and bool(
        _CAP.search(message) or "max_logprobs" in lowered or "max-logprobs" in lowered
    )


def logprobs_cap(message: str) -> int | None:
    """The server's top-logprobs limit named in a cap error (``max allowed: 20``), if any."""
    if not is_logprobs_cap(message):
        return None
    match = _CAP.search(message)
    return int(match.group(1)) if match else None


class Client:
    """A small JSON-over-HTTP client: keep-alive connection per thread, retries, timeouts."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = RETRIES,
        api_key: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.base_url = base_url
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.path = parts.path.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.deadline = deadline
        self._cancelled = threading.Event()
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._sleep = sleep
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[http.client.HTTPConnection] = []

    def get(self, path: str, *, retries: int | None = None, timeout: float | None = None) -> Any:
        return self._request("GET", path, None, retries, timeout)

    def post(
        self, path: str, body: Any, *, retries: int | None = None, timeout: float | None = None
    ) -> Any:
        return self._request("POST", path, json.dumps(body).encode(), retries, timeout)

    def close(self) -> None:
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()
        self._cancelled.clear()  # a later request opens a new connection

    def cancel(self) -> None:
        """Fail every request in flight at once and send no more until :meth:`close`
        (Ctrl-C: nothing waits for an answer that is no longer wanted)."""
        self._cancelled.set()
        with self._lock:
            for conn in self._open:
                if conn.sock is not None:
                    try:
                        conn.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread in recv()
                    except OSError:
                        pass

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self.https:
                conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=timeout, context=ssl.create_default_context()
                )
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            self._local.conn = conn
            with self._lock:
                self._open.append(conn)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                if conn in self._open:
                    self._open.remove(conn)

    def _request(
        self,
        method: str,
        path: str,
        data: bytes | None,
        retries: int | None,
        timeout: float | None,
    ) -> Any:
        attempts = 1 + (self.retries if retries is None else retries)
        last = "no attempt made"
        end = time.monotonic() + self.deadline
        made = 0
        for attempt in range(attempts):
            wait = min(BACKOFF * 2**attempt, MAX_BACKOFF)
            left = end - time.monotonic()
            if self._cancelled.is_set():
                raise Unreachable(f"{method} {self.base_url}{path} was cancelled")
            if left <= 0:
                break
            made += 1
            try:
                conn = self._connection(min(timeout or self.timeout, left))
                conn.request(method, self.path + path, body=data, headers=self.headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                # Refused, reset, timed out, or a keep-alive connection the server closed.
                self._drop()
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status == 200:
                    try:
                        return json.loads(raw)
                    except ValueError as exc:
                        raise ServerError(200, f"answer is not JSON: {exc}") from None
                message = error_message(raw)
                if response.status not in TRANSIENT_STATUS:
                    raise ServerError(response.status, message)
                last = f"HTTP {response.status}: {message}"
                retry_after = response.getheader("Retry-After")
                if retry_after and retry_after.strip().isdigit():
                    wait = min(float(retry_after), 30.0)
                if response.getheader("Connection", "").lower() == "close":
                    self._drop()
            if attempt + 1 < attempts and not self._cancelled.is_set():
                self._sleep(max(0.0, min(wait, end - time.monotonic())))
        raise Unreachable(
            f"{method} {self.base_url}{path} failed {made} times within its "
            f"{self.deadline:g} s deadline; last: {last}"
        )
