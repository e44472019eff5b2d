"""Output paths checked before anything slow happens.

Every path a command will write (a run directory, ``--json``, ``--markdown``,
``--output``, a report) is checked here before the models load, so a typo in an
output path is bad input (exit 2) rather than a failure after the work is done.
"""

from __future__ import annotations

import os
from pathlib import Path

from pairscope.errors import InputError


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or the closest ancestor that exists."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_dir_creatable(path: Path, option: str) -> None:
    """Raise unless ``path`` is a writable directory or can be created as one.

    Raises:
        InputError: an ancestor is a file, or the directory that would hold it is
            not writable.
    """
    path = Path(path)
    base = _nearest_existing(path)
    if not base.is_dir():
        raise InputError(f"{option} {path}: {base} is a file, not a directory.")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: {base} is not writable.")


def check_file_writable(path: str | Path | None, option: str) -> None:
    """Raise unless a file can be written at ``path`` (None and ``-``, stdout, pass).

    A missing parent directory is fine if it can be created (:func:`prepare`
    creates it when the file is written).

    Raises:
        InputError: ``path`` is a directory, an existing file that is not writable, or
            under a file or a directory that is not writable.
    """
    if path is None or str(path) == "-":
        return
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory, not a file.")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise InputError(f"{option} {path} is not writable.")
        return
    check_dir_creatable(path.parent, option)


def prepare(path: Path) -> Path:
    """Create the parent directory of an output file checked by :func:`check_file_writable`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
