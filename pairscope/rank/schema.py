"""The contract of ``rank.json``: every race of a rank, each guide's standing in it.

Typed and versioned like ``summary.json`` (:mod:`pairscope.schema`): unknown fields
are refused, and readers (the console leaderboard, the report, ``--merge``) read
only this.
"""

from __future__ import annotations

from typing import Literal

from pairscope.schema import Contract, Interval

RANK_SCHEMA_VERSION = 1

GuideStatus = Literal[
    "winner", "tied", "feasible", "infeasible", "dominated", "unresolved", "pruned", "racing"
]
RaceStatus = Literal["winner", "tie", "none-feasible", "unresolved", "running"]
Outcome = Literal["feasible", "none-feasible", "unresolved"]


class GuideStanding(Contract):
    """One guide in one race.

    ``decided_at`` is the batch at which the guide left the race (or the race ended);
    ``feasible_at`` the batch at which its IR was shown below the threshold; ``by``
    the guide that dominated it; ``cell`` its run directory, relative to the rank's.
    """

    guide: str
    status: GuideStatus
    n: int
    ir: Interval | None = None
    score: Interval | None = None
    decided_at: int | None = None
    feasible_at: int | None = None
    by: str | None = None
    reason: str = ""
    cell: str | None = None
    gain: float | None = None  # mean paired score gain over the base alone (--base-arm)


class Race(Contract):
    """The guides for one base on one task and method, raced on one sample order."""

    base: str
    task: str
    method: str
    threshold: float
    status: RaceStatus
    n: int  # samples of the committed order every surviving guide has finished
    budget: int
    batch: int
    batches: int
    alpha: float
    alpha_each: float  # each confidence sequence's level (Bonferroni)
    epsilon: float
    objective: Literal["score", "ir"]
    winners: list[str]  # the winner, or the tied guides
    guides: list[GuideStanding]


class RankResult(Contract):
    """What ``pairscope rank`` decided, and the exit code it gave."""

    kind: Literal["rank"] = "rank"
    schema_version: int = RANK_SCHEMA_VERSION
    bases: list[str]
    guides: list[str]
    tasks: list[str]
    method: str
    objective: Literal["score", "ir"]
    alpha: float
    epsilon: float
    budget: int
    batch: int
    seed: int | None
    shard: str | None = None  # "i/N" for one shard's share of the races; None: all of them
    races: list[Race]
    outcome: Outcome
    exit_code: int
    samples_decoded: int  # generations on disk over every cell (all guides and tasks)
    seconds: float  # wall time; merged shards: the longest shard's
