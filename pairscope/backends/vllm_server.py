"""Start and stop a local vLLM server (the served-model test, bench/served.py, trying it out).

The server runs from its own virtual environment (``scripts/vllm_env.sh`` builds
``.venv-vllm``), listens on 127.0.0.1 only, and is always stopped with its whole
process group (vLLM starts an engine-core child process).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pairscope.errors import RuntimeFault

# float32 matches transformers on CPU to ~4e-5; --max-logprobs 100 is what pairscope asks for.
SERVE_FLAGS = (
    "--dtype",
    "float32",
    "--enforce-eager",
    "--max-logprobs",
    "100",
    "--max-model-len",
    "2048",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def vllm_venv(root: Path | None = None) -> Path:
    """``PAIRSCOPE_VLLM_VENV``, else ``.venv-vllm`` at the repository root."""
    env = os.environ.get("PAIRSCOPE_VLLM_VENV")
    if env:
        return Path(env)
    return (root or Path(__file__).resolve().parents[2]) / ".venv-vllm"


@dataclass
class LocalServer:
    url: str  # http://127.0.0.1:PORT/v1
    process: subprocess.Popen[bytes]
    log: Path
    start_seconds: float

    @property
    def spec(self) -> str:
        return f"vllm:{self.url}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/models", timeout=2) as resp:
            return bool(json.loads(resp.read()).get("data"))
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


@contextmanager
def serve(
    model_dir: str | Path,
    *,
    venv: Path | None = None,
    log: Path,
    port: int | None = None,
    extra: Sequence[str] = (),
    startup_timeout: float = 300.0,
) -> Iterator[LocalServer]:
    """``vllm serve MODEL_DIR`` on 127.0.0.1, waited for, and always stopped.

    Raises:
        RuntimeFault: the server exits or is not answering within ``startup_timeout``
            (the message holds the tail of its log).
    """
    venv = venv or vllm_venv()
    port = port or free_port()
    env = dict(os.environ)
    env.setdefault("VLLM_HOST_IP", "127.0.0.1")
    # The CPU backend reserves a fraction of RAM for its KV cache unless told a size.
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    cmd = [
        str(venv / "bin" / "vllm"),
        "serve",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *SERVE_FLAGS,
        *extra,
    ]
    url = f"http://127.0.0.1:{port}/v1"
    started = time.perf_counter()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = LocalServer(url, process, log, 0.0)
    try:
        deadline = started + startup_timeout
        while not _ready(url):
            if process.poll() is not None:
                raise RuntimeFault(
                    f"vllm serve exited with code {process.returncode}:\n{server.log_tail()}"
                )
            if time.perf_counter() > deadline:
                raise RuntimeFault(
                    f"vllm serve did not answer within {startup_timeout:.0f} s:\n"
                    f"{server.log_tail()}"
                )
            time.sleep(1.0)
        server.start_seconds = time.perf_counter() - started
        yield server
    finally:
        _stop(process)
