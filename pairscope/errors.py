"""Error tree and exit codes. Core code raises these; only the CLI prints and exits."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes. They are part of the public API (CI gates on them)."""

    OK = 0
    GATE_FAILED = 1
    USAGE = 2
    RUNTIME = 3
    UNRESOLVED = 4  # rank: a race is undecided at its budget
    INTERRUPTED = 130


class PairscopeError(Exception):
    """Base class: a message for the user and, optionally, the next step to take."""

    exit_code: ExitCode = ExitCode.RUNTIME

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InputError(PairscopeError):
    """Bad input or usage: a setting out of range, an unknown name, a malformed file."""

    exit_code = ExitCode.USAGE


class ModelLoadError(InputError):
    """A model or tokenizer could not be found or loaded."""


class DataError(InputError):
    """A dataset or probe file is missing, altered, malformed or empty."""


class RunDirError(InputError):
    """A run directory is not a run, or a resume does not match its settings."""


class RuntimeFault(PairscopeError):
    """A failure while running (out of memory, NaN logits, ...); the run stays resumable."""

    exit_code = ExitCode.RUNTIME


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) where a command knows what it kept; ``message`` says what."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> InputError:
    """Build the error for an unknown registry name, suggesting a close one."""
    options = sorted(choices)
    return InputError(
        f"Unknown {kind} '{name}'.{did_you_mean(name, options)}",
        hint=f"Choose one of: {', '.join(options)}.",
    )
