"""What a method declares in the registry (``pairscope.methods``): its entry.

A method is one module in this package: its strategy class (``decoding.strategies.Strategy``:
its per-row state, its step schedule, how scores become a decision, how its intervention
rate is counted, its prompt set-up) and one :class:`Method` entry, which the rest of the
tool reads: the CLI's choices and help, the default method sets, the gate, the summary's
comparisons, the records a run writes for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pairscope.defaults import LAMBDA, TAU, TOP_K

if TYPE_CHECKING:
    from pairscope.decoding.strategies import Strategy


@dataclass(frozen=True)
class Knobs:
    """The run's decoding knobs a method may read (each takes what it needs)."""

    tau: float = TAU
    lam: float = LAMBDA
    top_k: int = TOP_K
    alpha: float | None = None  # --alpha: fixes BlendIn's weight (None: adaptive)
    protocol: str = "position"  # NUDGING's (``nudging.PROTOCOLS``)


@dataclass(frozen=True)
class Method:
    """One registry entry.

    ``name`` is what a user types, alone or as ``name:ARGUMENT`` when ``argument`` names
    one (its metavar); ``build(knobs, argument)`` makes the strategy (``argument``: the
    text after the colon, None without one) and raises ``InputError`` on a bad one.
    ``models``: the models it runs (``"base"``, ``"guide"`` or ``"both"``). ``gated``: it
    has an intervention rate the gate tests (a probe, a rank, evaluate's verdict).
    ``default``: in evaluate's default method set. ``versus``: the methods its summary
    compares it with (paired statistics), ``("*",)`` for every other arm of the run.
    ``records``: record kinds a run writes for it beside its generations
    (``"arbitration"``: the teacher-forced check of its picks). ``protocols``: it runs
    under ``--protocol``, which the console then names.
    """

    name: str
    help: str
    models: str
    build: Callable[[Knobs, str | None], Strategy]
    gated: bool = False
    default: bool = False
    argument: str | None = None
    needs_argument: bool = False
    versus: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    protocols: bool = False

    @property
    def usage(self) -> str:
        """How it is written on the command line (``blend:ALPHA``, ``urial[:FILE]``)."""
        if self.argument is None:
            return self.name
        if self.needs_argument:
            return f"{self.name}:{self.argument}"
        return f"{self.name}[:{self.argument}]"
