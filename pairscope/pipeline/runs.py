"""The run directory: the contract between a run, its summary and its report.

Layout (docs/methods.md §5)::

    config.json      every setting, versions, model identities and data checksums
    manifest.json    the sample ids per task (pass it back with --manifest)
    records.jsonl    one line per finished unit of work, appended and flushed at once
    summary.json     metrics computed from the records only (schema_version)
    figures/         PNG plots
    report.html      self-contained report, rendered from the files above

A unit of work is keyed by (kind, task, sample_id, method); on resume every key
already in ``records.jsonl`` is skipped, so nothing is redone or duplicated. A
line cut short by a hard kill is dropped (and the file truncated to the last
whole line) before appending resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pairscope.errors import RunDirError
from pairscope.pipeline.spec import RunSpec
from pairscope.schema import (
    RECORD,
    SCHEMA_VERSION,
    GenerationRecord,
    Record,
    RunConfig,
    Summary,
    check_version,
    dump,
    record_key,
)

CONFIG = "config.json"
MANIFEST = "manifest.json"
RECORDS = "records.jsonl"
SUMMARY = "summary.json"
LOCK = ".lock"  # held (flock) by the one process writing the run
COMMANDS = ("probe", "evaluate")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def versions() -> dict[str, str]:
    """Package versions recorded in config.json and shown in the report."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("pairscope", "torch", "transformers", "tokenizers", "datasets", "numpy", "scipy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a pairscope run: a ``config.json`` that is a JSON object with
    a schema version and a pairscope command. Any other ``config.json`` (a Hugging Face
    model's, another tool's) is not a run, so pairscope never writes beside it."""
    file = Path(path) / CONFIG
    if not file.is_file():
        return False
    try:
        data = read_json(file)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and isinstance(data.get("schema_version"), int)
        and data.get("command") in COMMANDS
    )


def _has_files(path: Path) -> bool:
    """Whether a directory holds anything besides a lock file left by an earlier run."""
    return any(entry.name != LOCK for entry in path.iterdir())


class RunLock:
    """An exclusive ``flock`` on ``RUN_DIR/.lock``, held for the whole run, so only one
    process writes a run directory. The holder writes its pid into the file; the
    operating system drops the lock when the holder exits, however it exits."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise at once (never waits).

        Raises:
            RunDirError: another process holds it (its pid is named).
        """
        try:
            import fcntl
        except ImportError:  # not POSIX (Windows): no lock, as documented
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirError(f"Cannot write the run directory {self.path.parent}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(
                f"{self.path.parent} is in use by another pairscope process (pid {holder}).",
                hint="A run directory takes one writer at a time: wait for that process to "
                "finish (or stop it), then resume.",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def check_free(self) -> None:
        """Raise as :meth:`acquire` does if another process holds the lock; keep nothing."""
        if self.path.is_file():
            self.acquire().release()


class RunDir:
    """A run directory, created fresh or opened to resume."""

    def __init__(self, path: Path, lock: RunLock | None = None) -> None:
        self.path = path
        self.done: set[tuple[str, str, str, str]] = set()
        self.lock = lock

    def close(self) -> None:
        """Release the run directory's lock (idempotent)."""
        if self.lock is not None:
            self.lock.release()

    @staticmethod
    def check_new(path: Path, force: bool = False) -> None:
        """Raise unless a new run may be created in ``path`` (called before slow work).

        Raises:
            RunDirError: ``path`` is a file, or exists and is not empty, unless it is a
                run and ``force`` is set (the old run is then replaced); or another
                process is writing that run; or ``path`` cannot be created.
        """
        if path.is_dir():
            RunLock(path).check_free()
        try:
            _check_contents(path, force)
        except RunDirError:
            if path.is_dir():  # a run that another process started meanwhile is named as one
                RunLock(path).check_free()
            raise

    @classmethod
    def create(cls, path: Path, spec: RunSpec, force: bool = False) -> RunDir:
        """Start a new run in ``path`` with this spec (recorded in its config.json).

        The run's lock is taken before anything is written and held until
        :meth:`close`; the checks of :meth:`check_new` are repeated under it, so two
        processes creating the same directory cannot both write it.

        Raises:
            RunDirError: as :meth:`check_new`.
        """
        cls.check_new(path, force)
        path.mkdir(parents=True, exist_ok=True)
        lock = RunLock(path).acquire()
        try:
            _check_contents(path, force)
        except BaseException:
            lock.release()
            raise
        if force:
            for name in (CONFIG, MANIFEST, RECORDS, SUMMARY, "report.html"):
                (path / name).unlink(missing_ok=True)
        run = cls(path, lock)
        full = RunConfig.model_validate(
            {
                "schema_version": SCHEMA_VERSION,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": spec.command,
                "settings": spec,
            }
        )
        write_json_atomic(path / CONFIG, dump(full))
        (path / RECORDS).touch()
        return run

    @classmethod
    def resume(cls, path: Path, spec: RunSpec) -> RunDir:
        """Open an interrupted run and take its lock; refuse if its spec differs from
        ``spec`` (every setting that changes results is compared), or if another
        process holds the run."""
        if not is_run_dir(path):
            raise RunDirError(
                f"--resume {path}: not a pairscope run directory (no pairscope {CONFIG}).",
                hint="Give the --out directory of an earlier probe or evaluate run.",
            )
        lock = RunLock(path).acquire()
        try:
            run = cls._open(path, spec, lock)
        except BaseException:
            lock.release()
            raise
        return run

    @classmethod
    def _open(cls, path: Path, spec: RunSpec, lock: RunLock) -> RunDir:
        old = read_config(path).settings
        differing = spec.differences(old)
        if differing:
            was, now = old.record(), spec.record()
            detail = "; ".join(f"{k}: run has {was.get(k)!r}, now {now[k]!r}" for k in differing)
            raise RunDirError(
                f"Cannot resume {path} with different settings ({detail}).",
                hint="Resume with the original settings, or start a new run with --out.",
            )
        run = cls(path, lock)
        run._repair()
        run.done = {record_key(r) for r in run.records()}
        return run

    def config(self) -> RunConfig:
        return read_config(self.path)

    def _repair(self) -> None:
        """Drop a last line cut short by a hard kill, so appends start on a fresh line."""
        path = self.path / RECORDS
        if not path.exists():
            path.touch()
            return
        raw = path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            cut = raw.rfind(b"\n") + 1
            with path.open("r+b") as handle:
                handle.truncate(cut)

    def write_config(self, config: RunConfig) -> None:
        write_json_atomic(self.path / CONFIG, dump(config))

    def write_manifest(self, manifests: dict[str, Any]) -> None:
        write_json_atomic(self.path / MANIFEST, manifests)

    def append(self, record: Record) -> None:
        """Append one record and flush it to disk before returning."""
        key = record_key(record)
        if key in self.done:
            return
        line = json.dumps(dump(record), ensure_ascii=False, allow_nan=False, sort_keys=True)
        with (self.path / RECORDS).open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done.add(key)

    def has(self, kind: str, task: str, sample_id: str, method: str) -> bool:
        return (kind, task, sample_id, method) in self.done

    def records(self) -> Iterator[Record]:
        return iter_records(self.path)

    def write_summary(self, summary: Summary) -> None:
        write_json_atomic(self.path / SUMMARY, dump(summary))


def _check_contents(path: Path, force: bool) -> None:
    """:meth:`RunDir.check_new` without the lock: what ``path`` holds and whether it can be made."""
    from pairscope.paths import check_dir_creatable

    if path.exists() and not path.is_dir():
        raise RunDirError(
            f"Output path {path} is a file, not a directory.",
            hint="Choose a new --out directory.",
        )
    check_dir_creatable(path, "--out")
    if path.exists() and _has_files(path):
        if not is_run_dir(path):
            raise RunDirError(
                f"Output directory {path} exists and is not a pairscope run; refusing to "
                "write into it.",
                hint="Choose a new --out directory.",
            )
        if not force:
            raise RunDirError(
                f"Output directory {path} already holds a run.",
                hint=f"Continue it with --resume {path}, or pass --force to replace it.",
            )


def iter_records(path: Path) -> Iterator[Record]:
    """Yield the whole records of a run directory, typed, skipping a truncated last line.

    Raises:
        RunDirError: a line that is not JSON, or not a record of this schema (the
            field at fault is named).
    """
    file = path / RECORDS
    if not file.exists():
        return
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                break
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except ValueError:
                raise RunDirError(
                    f"{file}: line {number} is not a JSON record; the file was edited or damaged.",
                    hint="Delete that line (the sample is then redone on --resume).",
                ) from None
            if not isinstance(data, dict):
                raise RunDirError(f"{file}: line {number} is not a JSON object.")
            try:
                yield RECORD.validate_python(data)
            except ValidationError as exc:
                raise RunDirError(
                    f"{file}: line {number} is not a record of schema version "
                    f"{SCHEMA_VERSION}: {_first_error(exc)}.",
                    hint="Delete that line (the sample is then redone on --resume), or read "
                    "the run with the pairscope version that wrote it.",
                ) from None


def iter_generations(run_dir: Path) -> Iterator[GenerationRecord]:
    """The ``generation`` records of a run directory (read as :func:`iter_records` does)."""
    for record in iter_records(run_dir):
        if isinstance(record, GenerationRecord):
            yield record


def _first_error(exc: ValidationError) -> str:
    """The first field at fault in ``exc``, as ``where: why``."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "the object"
    return f"{where}: {error['msg']}"


def read_config(run_dir: Path) -> RunConfig:
    """Parse and check ``run_dir/config.json``.

    Raises:
        RunDirError: unreadable, another schema version, or not a config of this schema.
    """
    path = Path(run_dir) / CONFIG
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _not_a_run(Path(run_dir), f"config.json is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _not_a_run(Path(run_dir), "config.json is not a JSON object")
    check_version(data.get("schema_version"), path)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise RunDirError(
            f"{path} does not match schema version {SCHEMA_VERSION}: {_first_error(exc)}."
        ) from None


def _not_a_run(run_dir: Path, why: str) -> RunDirError:
    return RunDirError(
        f"{run_dir} is not a pairscope run directory ({why})",
        hint="Pass the --out directory of a finished `pairscope probe` or "
        "`pairscope evaluate` run; an interrupted run can be resumed to write its summary.",
    )


def read_summary(run_dir: Path) -> Summary:
    """Parse and check ``run_dir/summary.json`` (what the report and figures read).

    Raises:
        RunDirError: no such directory or file, unreadable JSON, or an unknown schema version.
    """
    run_dir = Path(run_dir)
    path = run_dir / SUMMARY
    if not path.is_file():
        raise _not_a_run(run_dir, "no summary.json")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _not_a_run(run_dir, f"summary.json is not readable JSON: {exc}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("tasks"), dict):
        raise _not_a_run(run_dir, "summary.json has no 'tasks' table")
    check_version(summary.get("schema_version"), path)
    try:
        return Summary.model_validate(summary)
    except ValidationError as exc:
        raise RunDirError(
            f"{path} does not match schema version {SCHEMA_VERSION}: {_first_error(exc)}.",
            hint="Render it with the pairscope version that wrote it.",
        ) from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (data files, model files)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
