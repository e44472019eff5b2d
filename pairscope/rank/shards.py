"""Sharding a rank across machines that share its directory, and merging the shards.

The unit of work a shard takes is a race (every cell of one base and one task): the
guides of a race go in lockstep, batch by batch, so splitting a race would leave one
machine waiting on another. ``--shard i/N`` takes races ``i, i + N, i + 2N, ...`` of
the (base, task) list and writes ``rank-shard-i-of-N.json``;
:mod:`pairscope.rank.merge` combines the shard files.
"""

from __future__ import annotations

from typing import TypeVar

from pairscope.errors import InputError

T = TypeVar("T")
RANK_FILE = "rank.json"


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (1 <= i <= N) as ``(i, N)``; None for no sharding."""
    if not text:
        return None
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like i/N, e.g. 1/4 (got '{text}').") from None
    if not 1 <= i <= n:
        raise InputError(f"--shard {text}: need 1 <= i <= N.")
    return i, n


def my_races(races: list[T], shard: tuple[int, int] | None) -> list[T]:
    """The races this shard runs (all of them without sharding)."""
    if shard is None:
        return list(races)
    i, n = shard
    return races[i - 1 :: n]


def result_file(shard: tuple[int, int] | None) -> str:
    return RANK_FILE if shard is None else f"rank-shard-{shard[0]}-of-{shard[1]}.json"
