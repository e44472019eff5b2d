"""The decoding methods: one module each, and this registry, the only list of them.

Everything that names a method reads it from here: the CLI's choices and help, the
default method sets, the gate, the summary's comparisons, the report. A method is
written ``name`` or ``name:ARGUMENT`` (``blend:0.3``); its entry parses the argument.
A method of one's own joins with :func:`register`.
"""

from __future__ import annotations

from pairscope.decoding.strategies import Strategy
from pairscope.errors import InputError, unknown
from pairscope.methods.base import BASE, GUIDE
from pairscope.methods.blendin import BLEND, BLENDIN
from pairscope.methods.nudging import NUDGING, PROTOCOLS
from pairscope.methods.spec import Knobs, Method
from pairscope.methods.urial import URIAL

__all__ = ["Knobs", "Method", "REGISTRY", "PROTOCOLS", "build", "entry", "register"]

# The registry, in the order the CLI lists them.
REGISTRY: dict[str, Method] = {m.name: m for m in (BASE, GUIDE, NUDGING, BLENDIN, BLEND, URIAL)}


def register(method: Method) -> None:
    """Make a method every entry point accepts (the CLI, ``DecodeSettings``, a run)."""
    if not method.name or method.name in REGISTRY or ":" in method.name:
        raise ValueError(f"Method name '{method.name}' is taken or reserved.")
    REGISTRY[method.name] = method


def split(spec: str) -> tuple[str, str | None]:
    """``name`` or ``name:ARGUMENT`` -> (name, argument or None)."""
    name, colon, argument = spec.partition(":")
    return name, argument if colon else None


def entry(spec: str) -> Method:
    """The registry entry of a method as written (``blend:0.3`` -> blend's)."""
    name, argument = split(spec)
    method = REGISTRY.get(name)
    if method is None or (argument is not None and method.argument is None):
        raise unknown("method", spec, usages())
    if method.needs_argument and argument is None:
        raise InputError(f"Method '{name}' takes an argument: use {method.usage}.")
    return method


def build(spec: str, knobs: Knobs | None = None) -> Strategy:
    """The strategy of a method as written, with the run's knobs."""
    knobs = knobs or Knobs()
    if knobs.protocol not in PROTOCOLS:
        raise unknown("protocol", knobs.protocol, PROTOCOLS)
    return entry(spec).build(knobs, split(spec)[1])


def usages() -> list[str]:
    """Every method as written on the command line (``blend:ALPHA``)."""
    return [m.usage for m in REGISTRY.values()]


def choices_text(last: str = " or ") -> str:
    """The methods for a ``--help`` text: ``base, guide, ... or blend:ALPHA (...)``, a
    method with an argument followed by its help."""
    names = [f"{m.usage} ({m.help})" if m.argument else m.usage for m in REGISTRY.values()]
    return ", ".join(names[:-1]) + last + names[-1]


def defaults() -> tuple[str, ...]:
    """evaluate's default methods."""
    return tuple(m.name for m in REGISTRY.values() if m.default)


def gated() -> tuple[str, ...]:
    """The methods the gate can test, as written alone (a probe's or a rank's choices);
    the first is the default."""
    return tuple(m.name for m in REGISTRY.values() if m.gated and not m.needs_argument)


def is_gated(spec: str) -> bool:
    """Whether a method as written has an intervention rate the gate tests."""
    method = REGISTRY.get(split(spec)[0])
    return method is not None and method.gated


def check_gated(spec: str, what: str = "probe") -> None:
    """Raise InputError unless the gate can test this method: an unknown one is named as
    such, a known one without an intervention rate says so."""
    name = split(spec)[0]
    method = REGISTRY.get(name)
    choices = [m.usage for m in REGISTRY.values() if m.gated]
    if method is None:
        raise unknown(f"{what} method", spec, choices)
    if not method.gated:
        raise InputError(
            f"Method '{name}' has no intervention rate, so a {what} cannot gate it.",
            hint=f"Gate one of: {', '.join(choices)}; compare {name} with `pairscope evaluate`.",
        )


def with_protocols(specs: list[str] | tuple[str, ...]) -> bool:
    """Whether any of these methods runs under ``--protocol``."""
    return any((m := REGISTRY.get(split(s)[0])) is not None and m.protocols for s in specs)


def with_record(kind: str) -> tuple[str, ...]:
    """The methods a run writes records of this kind for (``"arbitration"``)."""
    return tuple(m.name for m in REGISTRY.values() if kind in m.records)


def comparisons() -> list[tuple[str, str]]:
    """The pairs a summary compares, (a, b), when a run holds both; ``"*"`` in a
    method's ``versus`` stands for every other method as the run wrote it
    (:func:`pairs_in`). Later registry entries come first."""
    return [(m.name, other) for m in reversed(REGISTRY.values()) for other in m.versus]


def pairs_in(methods: list[str]) -> list[tuple[str, str]]:
    """The pairs a summary compares among a run's methods, in order, each once."""
    out: list[tuple[str, str]] = []
    for a, b in comparisons():
        for other in (m for m in methods if m != a) if b == "*" else (b,):
            if (
                a in methods
                and other in methods
                and (a, other) not in out
                and (other, a) not in out
            ):
                out.append((a, other))
    return out
