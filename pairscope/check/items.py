"""The items a pre-flight check reports, and what it read about one model.

The check modules fill these: one per group of items, and :mod:`.served` for a server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pairscope.errors import ExitCode
from pairscope.metrics.intervention import Verdict

PASS, WARN, FAIL = Verdict.PASS, Verdict.WARN, Verdict.FAIL


@dataclass(frozen=True)
class Item:
    """One checked fact about one model (``base``, ``guide``) or the ``pair``."""

    check: str
    model: str
    status: Verdict
    found: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "check": self.check,
            "model": self.model,
            "status": self.status.value,
            "found": self.found,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class CheckReport:
    """Every item of one check, in the order checked, and how long it took."""

    base: str
    guide: str
    items: tuple[Item, ...]
    seconds: float

    @property
    def status(self) -> Verdict:
        """The worst item: FAIL, else WARN, else PASS."""
        statuses = {item.status for item in self.items}
        return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS

    @property
    def exit_code(self) -> ExitCode:
        """2 (input error) when any item failed, else 0: WARN items do not fail."""
        return ExitCode.USAGE if self.status is FAIL else ExitCode.OK

    def failures(self) -> list[Item]:
        return [item for item in self.items if item.status is FAIL]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": "check",
            "base": self.base,
            "guide": self.guide,
            "status": self.status.value,
            "exit_code": int(self.exit_code),
            "seconds": round(self.seconds, 3),
            "items": [item.to_dict() for item in self.items],
        }


@dataclass
class Model:
    """What the check read about one model."""

    role: str
    spec: str
    tokenizer: Any
    config: dict[str, Any]  # the model config's text part ({} for a served model without one)
    generation_eos: Any = None
    context_window: int | None = None
    served: bool = False
    items: list[Item] = field(default_factory=list)

    def item(self, check: str, status: Verdict, found: str, fix: str | None = None) -> None:
        self.items.append(Item(check, self.role, status, found, fix))


def read_json(path: Path) -> dict[str, Any]:

    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}
