"""The judge's verdicts on disk, one file per judge, so reruns and resumes cost nothing.

A verdict is stored under the judge's key (its spec, the dtype asked for and the
prompt version: :func:`judge_key`) and the sha256 of the (prompt, completion) pair.
Files are JSON lines appended as verdicts come in, so an interrupted run keeps the
verdicts it already paid for. The folder is ``PAIRSCOPE_JUDGE_CACHE``, else ``judge/``
in pairscope's cache folder (``PAIRSCOPE_CACHE`` or the user cache folder); deleting it
only costs the judge calls again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pairscope.errors import InputError

__all__ = ["CachedVerdict", "VerdictCache", "default_cache_dir", "item_key", "judge_key"]


@dataclass(frozen=True)
class CachedVerdict:
    """The judge's raw reply and the class read from it (None: unparseable)."""

    label: str | None
    reply: str


def default_cache_dir() -> Path:
    """``PAIRSCOPE_JUDGE_CACHE``, else ``judge/`` in pairscope's cache folder."""
    env = os.environ.get("PAIRSCOPE_JUDGE_CACHE")
    if env:
        return Path(env).expanduser()
    from pairscope.models import cache_dir

    return cache_dir() / "judge"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def judge_key(spec: str, dtype: str, prompt_version: str) -> str:
    """What identifies a judge's verdicts: the model spec, dtype and prompt version."""
    return _digest(spec, dtype, prompt_version)[:24]


def item_key(prompt: str, completion: str) -> str:
    """What identifies one judged item: its prompt and completion."""
    return _digest(prompt, completion)


class VerdictCache:
    """Verdicts of one judge, read once, appended as they come."""

    def __init__(self, folder: Path, key: str, identity: dict[str, str]) -> None:
        self.path = folder / f"{key}.jsonl"
        self._identity = identity
        self._verdicts: dict[str, CachedVerdict] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self._verdicts[row["item"]] = CachedVerdict(row["label"], row["reply"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by an interruption: judged again

    def get(self, item: str) -> CachedVerdict | None:
        return self._verdicts.get(item)

    def put(self, entries: dict[str, CachedVerdict]) -> None:
        """Store verdicts (in memory and appended to the file)."""
        if not entries:
            return
        lines = [
            json.dumps({"item": k, "label": v.label, "reply": v.reply, **self._identity})
            for k, v in entries.items()
        ]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in lines))
        except OSError as exc:
            raise InputError(
                f"Cannot write the judge cache {self.path}: {exc}",
                hint="Set PAIRSCOPE_JUDGE_CACHE to a writable folder.",
            ) from None
        self._verdicts.update(entries)
