"""The console leaderboard of a rank: one table per race, read from rank.json's model."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pairscope.rank.schema import Race, RankResult
from pairscope.schema import Interval

STATUS_STYLE = {
    "winner": "bold green",
    "tied": "bold green",
    "feasible": "green",
    "unresolved": "bold yellow",
    "racing": "yellow",
    "dominated": "red",
    "infeasible": "bold red",
    "pruned": "bold red",
}
RACE_PHRASE = {
    "winner": "a feasible winner",
    "tie": "a tie within ε",
    "none-feasible": "no feasible pair",
    "unresolved": "unresolved at the budget",
    "running": "still running",
}
ORDER = ["winner", "tied", "feasible", "unresolved", "racing", "dominated", "infeasible", "pruned"]


def _span(value: Interval | None) -> str:
    if value is None or value.point is None:
        return "-"
    return f"{value.point:.3f} [{value.low:.3f}, {value.high:.3f}]"


def race_table(race: Race) -> Table:
    """A race's guides, best first: status, samples, IR and score with their intervals."""
    title = (
        f"{race.task} / {race.method}, base {race.base}: {RACE_PHRASE[race.status]} "
        f"after {race.n} of {race.budget} samples (θ {race.threshold:g}, α {race.alpha:g}, "
        f"ε {race.epsilon:g})"
    )
    table = Table(title=escape(title), title_justify="left")
    for col in ("guide", "status", "n", "IR", "score", "batch", "why"):
        table.add_column(col, overflow="fold")
    for g in sorted(race.guides, key=lambda g: ORDER.index(g.status)):
        why = g.reason + (f" ({g.by})" if g.by and g.by not in g.reason else "")
        table.add_row(
            escape(g.guide),
            f"[{STATUS_STYLE[g.status]}]{g.status}[/]",
            str(g.n),
            _span(g.ir),
            _span(g.score),
            "" if g.decided_at is None else str(g.decided_at),
            escape(why),
        )
    return table


def print_leaderboard(result: RankResult, console: Console) -> None:
    for race in result.races:
        console.print(race_table(race))
    phrase = {
        "feasible": "every race has a feasible winner or a tie",
        "none-feasible": "a race has no feasible pair",
        "unresolved": "a race is unresolved at the budget",
    }[result.outcome]
    console.print(
        f"[bold]rank:[/] {phrase}; {result.samples_decoded} samples decoded over all cells "
        f"in {result.seconds:.1f} s (exit {result.exit_code})"
    )
