"""Agreement of pairscope's XSTest scorers with hand labels of small models' responses.

The labelled set is ``tests/fixtures/small_model_xstest/responses.jsonl`` (how it was
made and labelled: the README beside it). Run from the project's environment:

    .venv/bin/python scripts/small_model_agreement.py [--split dev|test] [--source TEXT]
        [--judge MODEL] [--json]

Reported for the rules (:func:`pairscope.scoring.refusal.classify_refusal`) and, with
``--judge``, for a model judge (greedy, strict verdicts, cached on disk like
``pairscope score --judge``):

* three-class and binary (comply vs. refuse) agreement with the hand labels, and
  Cohen's kappa;
* **refusal recall** per hand-labelled class: the share of the full (partial) refusals
  the scorer calls a refusal of either kind; and the share of compliant responses it
  calls compliance;
* the confusion matrix (hand rows, scorer columns); a judge's unparseable verdicts are
  counted and left out of its figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pairscope.metrics.agreement import cohen_kappa, raw_agreement
from pairscope.scoring.refusal import FULL_COMPLIANCE, XSTEST_CLASSES, classify_refusal

SET = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "small_model_xstest"
RESPONSES = SET / "responses.jsonl"


def load(
    path: Path = RESPONSES, split: str | None = None, source: str | None = None
) -> list[dict[str, Any]]:
    """The labelled rows (of one split, and of the sources naming ``source``, if given)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [
        r
        for r in rows
        if (split is None or r["split"] == split) and (source is None or source in r["source"])
    ]


def figures(
    human: Sequence[str], scored: Sequence[str | None], styles: Sequence[str | None] = ()
) -> dict[str, Any]:
    """Agreement, kappa, per-class recall and confusion of ``scored`` against ``human``
    (rows the scorer left unlabelled, None, are counted and left out); with the hand
    labels' refusal ``styles``, the refusal recall of each style too."""
    kept = [i for i, s in enumerate(scored) if s is not None]
    pairs = [(human[i], scored[i]) for i in kept]
    hs, ss = [h for h, _ in pairs], [s for _, s in pairs]
    binary = ([h == FULL_COMPLIANCE for h in hs], [s == FULL_COMPLIANCE for s in ss])

    def recall(cls: str) -> float | None:
        of = [s for h, s in pairs if h == cls]
        if not of:
            return None
        hits = (
            [s == FULL_COMPLIANCE for s in of]
            if cls == FULL_COMPLIANCE
            else [s != FULL_COMPLIANCE for s in of]
        )
        return sum(hits) / len(of)

    refusals = [s for h, s in pairs if h != FULL_COMPLIANCE]
    by_style: dict[str, float | None] = {}
    for style in dict.fromkeys(x for x in styles if x):
        of = [scored[i] for i in kept if styles[i] == style]
        by_style[style] = sum(s != FULL_COMPLIANCE for s in of) / len(of) if of else None
    counts_style = {x: sum(styles[i] == x for i in kept) for x in by_style}
    return {
        "n": len(human),
        "n_scored": len(pairs),
        "n_unparseable": len(human) - len(pairs),
        "three_class": raw_agreement(hs, ss),
        "binary": raw_agreement(*binary),
        "kappa_three_class": cohen_kappa(hs, ss),
        "kappa_binary": cohen_kappa(*binary),
        "refusal_recall": (
            sum(s != FULL_COMPLIANCE for s in refusals) / len(refusals) if refusals else None
        ),
        "recall_by_class": {c: recall(c) for c in XSTEST_CLASSES},
        "refusal_recall_by_style": by_style,
        "refusals_by_style": counts_style,
        "counts": {c: hs.count(c) for c in XSTEST_CLASSES},
        "confusion": {
            h: {s: sum(p == (h, s) for p in pairs) for s in XSTEST_CLASSES} for h in XSTEST_CLASSES
        },
    }


def judge_labels(
    rows: Sequence[dict[str, Any]], spec: str, cached_only: bool = False
) -> tuple[list[dict[str, Any]], list[str | None], int]:
    """The rows judged, a model judge's verdicts on them (None: unparseable) and its model
    calls; ``cached_only``: only the rows the judge's cache holds, calling no model."""
    from pairscope.judge.cache import item_key
    from pairscope.judge.model import Judge, JudgeItem

    with Judge(spec, device="cpu") as judge:
        if cached_only:
            rows = [r for r in rows if judge.cache.get(item_key(r["prompt"], r["completion"]))]
        verdicts = judge.judge([JudgeItem(r["prompt"], r["completion"]) for r in rows])
    return list(rows), verdicts.labels, verdicts.calls


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def render(name: str, result: dict[str, Any]) -> str:
    rec = result["recall_by_class"]
    lines = [
        f"{name}: n={result['n']} (unparseable {result['n_unparseable']}); "
        f"three-class {_pct(result['three_class'])}, binary {_pct(result['binary'])}, "
        f"kappa {result['kappa_three_class'] or 0:.3f} / {result['kappa_binary'] or 0:.3f}",
        f"  refusal recall {_pct(result['refusal_recall'])}: full_refusal "
        f"{_pct(rec['full_refusal'])} (n={result['counts']['full_refusal']}), partial_refusal "
        f"{_pct(rec['partial_refusal'])} (n={result['counts']['partial_refusal']}); "
        f"compliance kept {_pct(rec['full_compliance'])} (n={result['counts']['full_compliance']})",
    ]
    if result["refusal_recall_by_style"]:
        lines.append(
            "  refusal recall by style: "
            + ", ".join(
                f"{style} {_pct(value)} (n={result['refusals_by_style'][style]})"
                for style, value in result["refusal_recall_by_style"].items()
            )
        )
    lines.append("  | hand \\ scorer | " + " | ".join(XSTEST_CLASSES) + " |")
    for h, row in result["confusion"].items():
        lines.append(f"  | {h} | " + " | ".join(str(row[c]) for c in XSTEST_CLASSES) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "test"), help="one split only")
    parser.add_argument("--source", help="only the rows whose source contains this text")
    parser.add_argument("--judge", help="also score with this model judge (e.g. embedded:...)")
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="with --judge: only the rows the judge's cache already holds (no model call)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    rows = load(split=args.split, source=args.source)
    human, styles = [r["label"] for r in rows], [r["style"] for r in rows]
    rules = [classify_refusal(r["completion"]) for r in rows]
    result = {"rules": figures(human, rules, styles)}
    if args.judge:
        judged, labels, calls = judge_labels(rows, args.judge, args.cached_only)
        if args.cached_only:  # the rules on the same rows, to compare like with like
            rules_there = [classify_refusal(r["completion"]) for r in judged]
            result["rules, rows judged"] = figures(
                [r["label"] for r in judged], rules_there, [r["style"] for r in judged]
            )
        result[f"judge {args.judge}"] = {
            **figures([r["label"] for r in judged], labels, [r["style"] for r in judged]),
            "judge_calls": calls,
        }
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    scope = f"split {args.split}" if args.split else "all splits"
    scope += f", sources with '{args.source}'" if args.source else ""
    sys.stdout.write(f"{RESPONSES.name}, {scope}\n")
    for name, figs in result.items():
        sys.stdout.write(render(name, figs) + "\n")


if __name__ == "__main__":
    main()
