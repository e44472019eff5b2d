"""The results contract: every record of ``records.jsonl``, ``config.json`` and ``summary.json``.

One typed, versioned description of what a run writes, read by every consumer
(the summary, the report, the figures, the CLI tables and ``compare``), so a
field has one name and one type everywhere and a fixture or an old file that
drifts from it fails loudly instead of rendering a blank. Models forbid unknown
fields; a file of another ``schema_version`` is refused with the reason
(:func:`check_version`).

Writers build these models and dump them with :func:`dump` (fields that were
never set — optional ones a producer leaves out — stay out of the file, so a
file read and written again is unchanged).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pairscope.errors import RunDirError

# config.json's ``settings`` (and summary.json's): the run's spec as recorded.
# pairscope.pipeline.spec declares each setting once; Settings reads the recorded keys back.
from pairscope.pipeline.spec import Settings

SCHEMA_VERSION = 3  # 2: intervention_rate is each method's own (rounds for NUDGING)
# 3: NUDGING's rate is its protocol's (settings.protocol; the reference protocol by
# default). Version 2 files are runs of the position protocol and are read as such.
READABLE_VERSIONS = (2, SCHEMA_VERSION)

VerdictName = Literal["PASS", "WARN", "FAIL"]


class Contract(BaseModel):
    """A part of the contract: strict (no unknown field), immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def dump(model: BaseModel) -> dict[str, Any]:
    """JSON-ready form of ``model``: aliases as written on disk, unset optional fields left out."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


# ---------------------------------------------------------------- records.jsonl


class StepRecord(Contract):
    """One base position of a response (:class:`pairscope.decoding.types.Step`)."""

    position: int
    p_base: float
    p_guide: float | None
    alpha: float | None
    text: str
    source: str
    uncertain: bool
    override: bool
    overlap: float | None = None
    guide_top1_in_base: bool | None = None
    round_start: bool = False
    tokens: int = 1


class _Keyed(Contract):
    task: str
    sample_id: str
    method: str

    def model_post_init(self, context: Any, /) -> None:
        # ``kind`` has its class's default, and a record always writes it.
        self.__pydantic_fields_set__.add("kind")


class SessionRecord(_Keyed):
    """One start (or resume) of a run: how long the models took to load."""

    kind: Literal["session"] = "session"
    load_seconds: float


class GenerationRecord(_Keyed):
    """One decoded response of one sample under one method, scored."""

    kind: Literal["generation"] = "generation"
    prompt: str
    target: str
    correct: bool
    label: str | None
    extracted: str | None
    seconds: float
    text: str
    positions: int
    uncertain: int | None
    overridden: int
    ir_kind: str | None
    ir_numerator: int | None
    ir_denominator: int | None
    intervention_rate: float | None
    uncertain_rate: float | None
    stop_reason: str
    steps: list[StepRecord] = []


class CalibrationRecord(_Keyed):
    """Teacher-forced top-1 confidence and correctness of one model on a reference."""

    kind: Literal["calibration"] = "calibration"
    confidence: list[float]
    correct: list[bool]


class ArbitrationRecord(_Keyed):
    """At the base's uncertain reference positions: whose top-1 was right."""

    kind: Literal["arbitration"] = "arbitration"
    base: list[bool]
    guide: list[bool]
    confident: list[bool]
    blend: list[bool]


class AnswerRecord(_Keyed):
    """One model's renormalised distribution over a multiple-choice question's letters."""

    kind: Literal["answer"] = "answer"
    letters: list[str]
    probs: list[float]
    answer: str | None


Record = Annotated[
    SessionRecord | GenerationRecord | CalibrationRecord | ArbitrationRecord | AnswerRecord,
    Field(discriminator="kind"),
]
RECORD = TypeAdapter(Record)


def record_key(record: Record) -> tuple[str, str, str, str]:
    """The unit of work a record finishes: (kind, task, sample_id, method)."""
    return (record.kind, record.task, record.sample_id, record.method)


# ---------------------------------------------------------------- config.json


class ModelIdentity(Contract):
    """What a run records about one model (local or served)."""

    spec: str
    kind: str
    path: str | None = None
    sha256: str | None = None
    revision: str | None = None
    architecture: str
    vocab_size: int
    device: str
    dtype: str
    chat_template: bool
    # A served model's own facts.
    served_model: str | None = None
    served_root: str | None = None
    server_version: str | None = None
    tokenizer: str | None = None
    max_model_len: int | None = None
    logprobs_k: int | None = None
    token_ids: bool | None = None


class Pair(Contract):
    base: ModelIdentity
    guide: ModelIdentity


class DataInfo(Contract):
    """Which data a task read: its file and checksum or Hub path, and the samples' fingerprint."""

    file: str | None
    sha256: str | None
    hub: str | None
    probe_version: int
    data_fingerprint: str
    scorer: str | None = None  # the probe's scorer; None in runs from before it was recorded


class TaskSize(Contract):
    n: int
    dataset_size: int


class StaticOverlap(Contract):
    """Overlap of the two vocabularies' token strings (before decoding)."""

    jaccard: float | None
    base_size: int
    guide_size: int
    intersection: int
    union: int


class RunConfig(Contract):
    """config.json. The pair, versions, data and tasks are filled in once the models load."""

    schema_version: int
    created: str
    command: str
    settings: Settings
    pair: Pair | None = None
    versions: dict[str, str] = {}
    data: dict[str, DataInfo] = {}
    tasks: dict[str, TaskSize] = {}
    static_overlap: StaticOverlap | None = None


# ---------------------------------------------------------------- summary.json


class Interval(Contract):
    """A point estimate and its 95 % interval; None where undefined."""

    point: float | None
    low: float | None
    high: float | None


class Score(Interval):
    correct: int
    n: int


class Distribution(Contract):
    """The spread of the per-sample intervention rates."""

    n: int
    mean: float | None
    min: float | None
    p25: float | None
    median: float | None
    p75: float | None
    max: float | None


class MethodSummary(Contract):
    """One method on one task: its score, its intervention rate (the method's own) and speed."""

    score: Score
    ir_definition: str | None
    intervention_rate: Interval | None
    uncertain_rate: Interval | None
    override_rate: Interval | None
    ir_distribution: Distribution | None
    per_sample_ir: list[float | None]
    ir_counts: list[tuple[int, int]]
    tokens: int
    seconds: float
    tokens_per_second: float | None
    # The task's own rates (XSTest: compliance on safe, refusal on unsafe prompts).
    rates: dict[str, Interval] | None = None


class SequentialSummary(Contract):
    """The anytime-valid test of the gate method's pooled IR, and why decoding stopped."""

    method: str
    theta: float
    alpha: float
    n: int
    verdict: VerdictName
    decided_at: int | None
    ir: Interval
    e_fail: float | None
    e_pass: float | None
    budget: int
    used: int
    stop_reason: Literal["decided", "budget", "futile", "incomplete", "fixed"]
    # "futile": the estimated chance of a decision within the budget when it stopped.
    decision_chance: float | None = None
    used_for_verdict: bool
    reason: str


class OverlapSummary(Contract):
    """overlap@k and the guide's top-1 in the base top-k, at the gate method's uncertain steps."""

    n_positions: int
    overlap_at_k: Interval | None
    top1_in_topk: Interval | None


class ReliabilityBin(Contract):
    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None


class Calibration(Contract):
    """One model's calibration on one task, with bootstrap intervals over samples."""

    ece: Interval
    ece_equal_mass: Interval
    mce: Interval
    n_samples: int
    n_tokens: int
    mean_confidence: float | None
    accuracy: float | None
    n_bins: int
    bins: list[ReliabilityBin]


class Arbitration(Contract):
    """Does the more confident model's top-1 beat the better single model's?"""

    n_positions: int
    accuracy: dict[str, Interval] | None
    confidence_minus_better: Interval | None = None
    confidence_helps: bool | None
    statement: str


class McNemar(Contract):
    b01: int
    b10: int
    n_discordant: int
    p_value: float | None


class Comparison(Contract):
    """Method ``a`` against ``b`` on the same samples: paired difference, McNemar, MDE."""

    a: str
    b: str
    n: int
    diff: Interval
    mcnemar: McNemar
    mde: float


class TaskSummary(Contract):
    """One task: the verdict and every metric the report shows."""

    n: int
    budget: int
    dataset_size: int
    subset: bool
    threshold: float
    gate_method: str
    verdict: VerdictName | None
    verdict_source: Literal["anytime-valid", "bootstrap"]
    reason: str
    sequential: SequentialSummary | None
    methods: dict[str, MethodSummary]
    overlap: OverlapSummary | None
    calibration: dict[str, Calibration] | None
    answer_calibration: dict[str, Calibration] | None
    arbitration: Arbitration | None
    comparisons: list[Comparison]


class Timing(Contract):
    """``decode_seconds`` sums every session's decoding; ``load_seconds`` is the last
    session's model loading and ``total_seconds`` that session's wall time."""

    load_seconds: float
    decode_seconds: float
    total_seconds: float | None = None  # set by the run itself, not by `pairscope report`
    sessions: int = 1  # starts of the run: 1, plus one per --resume


class Overall(Contract):
    verdict: VerdictName
    gate_passed: bool
    exit_code: int
    policy: str
    strict: bool


class Summary(Contract):
    """summary.json: a pure function of the run directory's other files."""

    schema_version: int
    kind: str
    pair: Pair | None
    settings: Settings
    versions: dict[str, str]
    data: dict[str, DataInfo]
    static_overlap: StaticOverlap | None
    timing: Timing
    tasks: dict[str, TaskSummary]
    overall: Overall
    # With --judge: judge.json (the model judge beside the rules on XSTest responses).
    judge: dict[str, Any] | None = None

    def model_spec(self, role: Literal["base", "guide"]) -> str:
        """The model spec of ``role`` as loaded, or as asked for if the models never loaded."""
        if self.pair is not None:
            return getattr(self.pair, role).spec
        return str(getattr(self.settings, role))


def check_version(version: object, path: object) -> None:
    """Refuse a file of a schema version this pairscope does not read, saying why.

    Raises:
        RunDirError: version 1 (its NUDGING rate means something else) or any other.
    """
    if version == 1:
        raise RunDirError(
            f"{path} has schema_version 1: its intervention_rate is uncertain positions / "
            "positions for every method, so a NUDGING rate there is not the paper's "
            "rounds / base-written tokens that this pairscope gates on.",
            hint="Run `pairscope report` on it with the version that wrote it, or re-run "
            "the probe (records of version 1 do not hold NUDGING's rounds).",
        )
    if version not in READABLE_VERSIONS:
        raise RunDirError(
            f"{path} has schema_version {version!r}; this pairscope reads version "
            f"{SCHEMA_VERSION}.",
            hint="Render it with the pairscope version that wrote it.",
        )
