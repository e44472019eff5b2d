"""The probe schema: strict, versioned YAML definitions, their templates, and loading them.

A probe is data (``probes/*.yaml``): where its benchmark lives (Hub id or a
local file pinned by sha256), how dataset columns map to canonical field
names, the prompt templates, stop strings, scorer and gate threshold. The
scorer names a task of :data:`pairscope.tasks.TASKS`, which says the fields it
needs and the template values it derives, so a probe is checked against its
task when it is read.

Templates substitute ``{name}`` placeholders with one regular-expression pass
(never ``str.format``, never ``eval``): a value that itself contains
``{question}`` stays literal, and a ``{`` that is not a placeholder is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pairscope.errors import DataError, unknown
from pairscope.tasks import TASKS

__all__ = [
    "BUILTIN_PROBES_DIR",
    "HubSource",
    "LocalSource",
    "ProbeSpec",
    "Prompts",
    "Source",
    "is_builtin",
    "list_probes",
    "load_probe",
    "render_template",
]

# The YAML files live at the repo root (their canonical place); an editable
# install resolves them from the package's parent directory (this file is
# pairscope/probes/schema.py).
BUILTIN_PROBES_DIR = Path(__file__).resolve().parents[2] / "probes"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSource(_Strict):
    """Where the benchmark lives on the Hugging Face Hub."""

    path: str = Field(min_length=1)
    config: str | None = None
    split: str = Field(min_length=1)
    # Column names on the Hub when they differ from the local file's.
    fields: dict[str, str] | None = None


class LocalSource(_Strict):
    """A local copy of the benchmark, relative to the data directory (or the probe file)."""

    file: str = Field(min_length=1)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    format: Literal["jsonl", "csv"]


class Source(_Strict):
    """At least one of a Hub id and a local file."""

    hub: HubSource | None = None
    local: LocalSource | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Source:
        if self.hub is None and self.local is None:
            raise ValueError("give at least one of 'hub' and 'local'")
        return self


class Prompts(_Strict):
    """Prompt templates; ``{fewshot}`` expands to the rendered few-shot examples."""

    base: str = Field(min_length=1)
    guide_user: str = Field(min_length=1)
    # The guide's system message (None: the chat template's own default) and the start
    # of its answer, written into the open assistant turn before the response.
    guide_system: str | None = None
    guide_prefix: str = ""
    fewshot_template: str | None = None
    fewshot: list[dict[str, str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fewshot_needs_template(self) -> Prompts:
        if self.fewshot and self.fewshot_template is None:
            raise ValueError("'fewshot' examples need a 'fewshot_template'")
        return self


class ProbeSpec(_Strict):
    """A validated probe definition (one YAML file).

    Fields are validated in the order declared here, so the cross-field checks below
    can see the fields declared before them (``info.data``) and report the field at
    fault by name.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    version: int = Field(ge=1)
    description: str
    source: Source
    fields: dict[str, str] = Field(min_length=1)
    list_fields: dict[str, str] = Field(default_factory=dict)
    stratify: str | list[str] | None = None
    n: int = Field(default=100, gt=0)
    seed: int = 0
    scorer: str
    prompts: Prompts
    stop: list[str] = Field(default_factory=list)
    max_new_tokens: int = Field(gt=0)
    reference: str | None = None
    target: str = Field(min_length=1)
    threshold: float = Field(default=0.20, ge=0.0, le=1.0)

    _origin: Path | None = PrivateAttr(default=None)

    @property
    def origin(self) -> Path | None:
        """The YAML file this probe was read from, if any."""
        return self._origin

    @property
    def stratify_fields(self) -> tuple[str, ...]:
        """The stratification fields as a tuple (empty when not stratified)."""
        if self.stratify is None:
            return ()
        return (self.stratify,) if isinstance(self.stratify, str) else tuple(self.stratify)

    @field_validator("fields")
    @classmethod
    def _hub_columns_cover_fields(cls, value: dict[str, str], info: ValidationInfo) -> dict:
        source = info.data.get("source")
        if source is not None and source.hub is not None and source.hub.fields is not None:
            if set(source.hub.fields) != set(value):
                raise ValueError("source.hub.fields must map exactly the keys of 'fields'")
        return value

    @field_validator("list_fields")
    @classmethod
    def _list_fields_known(cls, value: dict[str, str], info: ValidationInfo) -> dict:
        _check_known("list_fields", value, info.data.get("fields"))
        return value

    @field_validator("stratify")
    @classmethod
    def _stratify_known(cls, value: str | list[str] | None, info: ValidationInfo) -> Any:
        names = [value] if isinstance(value, str) else value or []
        _check_known("stratify", names, info.data.get("fields"))
        return value

    @field_validator("scorer")
    @classmethod
    def _scorer_known(cls, value: str, info: ValidationInfo) -> str:
        task = TASKS.get(value)
        if task is None:
            raise ValueError(f"unknown scorer '{value}'; choose one of {sorted(TASKS)}")
        fields = info.data.get("fields")
        missing = [f for f in task.required if fields is not None and f not in fields]
        if missing:
            raise ValueError(f"scorer '{value}' needs fields {missing} in 'fields'")
        return value

    @field_validator("prompts")
    @classmethod
    def _prompt_placeholders(cls, value: Prompts, info: ValidationInfo) -> Prompts:
        names = _template_names(info)
        if names is not None:
            _check_placeholders("prompts.base", value.base, names | {"fewshot"})
            _check_placeholders("prompts.guide_user", value.guide_user, names | {"fewshot"})
        if value.fewshot_template is not None:
            for i, example in enumerate(value.fewshot):
                _check_placeholders(f"prompts.fewshot.{i}", value.fewshot_template, set(example))
        return value

    @field_validator("reference", "target")
    @classmethod
    def _field_placeholders(cls, value: str | None, info: ValidationInfo) -> str | None:
        names = _template_names(info)
        if value is not None and names is not None:
            _check_placeholders(str(info.field_name), value, names)
        return value


def _template_names(info: ValidationInfo) -> set[str] | None:
    """Placeholders a template may use, or None when fields or scorer failed validation."""
    fields, scorer = info.data.get("fields"), info.data.get("scorer")
    if fields is None or scorer is None:
        return None
    return set(fields) | set(TASKS[scorer].derived)


def _check_known(where: str, names: Iterable[str], fields: Mapping[str, str] | None) -> None:
    unknown_names = [n for n in names if fields is not None and n not in fields]
    if unknown_names:
        raise ValueError(f"{where}: {unknown_names} not a key of 'fields'")


def _check_placeholders(where: str, template: str, known: set[str]) -> None:
    bad = sorted(set(_PLACEHOLDER.findall(template)) - known)
    if bad:
        raise ValueError(
            f"{where}: unknown placeholder(s) {', '.join('{' + b + '}' for b in bad)}; "
            f"known: {', '.join(sorted(known))}"
        )


def render_template(template: str, values: Mapping[str, Any]) -> str:
    """Substitute ``{name}`` placeholders in one pass; list values are joined with '; '.

    Raises:
        KeyError: a placeholder has no value (probe validation rules this out).
    """

    def repl(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        return "; ".join(value) if isinstance(value, list) else str(value)

    return _PLACEHOLDER.sub(repl, template)


def list_probes() -> list[str]:
    """Names of the built-in probes."""
    return sorted(p.stem for p in BUILTIN_PROBES_DIR.glob("*.yaml"))


def load_probe(name_or_path: str | Path) -> ProbeSpec:
    """Load a built-in probe by name, or a user probe from a YAML file path.

    Raises:
        InputError: an unknown built-in name (with a close-name suggestion).
        DataError: the file is missing or does not match the schema; the message
            names the file, the field and the reason.
    """
    text = str(name_or_path)
    is_path = isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text
    if is_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise DataError(f"Probe file not found: {path}")
    else:
        path = BUILTIN_PROBES_DIR / f"{text}.yaml"
        if not path.is_file():
            raise unknown("probe", text, list_probes())
    spec = _parse_probe_file(path)
    if not is_path and spec.name != text:
        raise DataError(f"Probe file {path}: name '{spec.name}' does not match the file name.")
    return spec


def _parse_probe_file(path: Path) -> ProbeSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(f"Probe file {path} is not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"Probe file {path} is not UTF-8 text: {exc.reason}.") from None
    except OSError as exc:
        raise DataError(f"Probe file {path} cannot be read: {exc}") from None
    if not isinstance(raw, dict):
        raise DataError(f"Probe file {path}: expected a mapping at the top level.")
    try:
        spec = ProbeSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(top level)'}': {err['msg']}"
            for err in exc.errors()
        )
        raise DataError(
            f"Probe file {path} is invalid: {problems}",
            hint="See probes/gsm8k.yaml for a complete, commented example.",
        ) from None
    spec._origin = path.resolve()
    return spec


def is_builtin(spec: ProbeSpec) -> bool:
    """Whether the probe was read from the built-in probe directory."""
    return spec.origin is not None and spec.origin.parent == BUILTIN_PROBES_DIR
