"""BlendIn and the fixed-weight blend (docs/methods.md §2): at an uncertain position,
the argmax of a weighted mix of the two models' top-k next-token probabilities."""

from __future__ import annotations

from collections.abc import Mapping

from pairscope.decoding.strategies import Decision, Strategy, TopK, Uncertain
from pairscope.defaults import LAMBDA, TAU, TOP_K
from pairscope.errors import InputError
from pairscope.methods.spec import Knobs, Method
from pairscope.runtime.vocab import MatchKey


def auto_alpha(base: TopK, guide: TopK, lam: float) -> float:
    """BlendIn's adaptive weight: clip(p_g / (p_b + p_g) + lam * P_b(s_g), 0, 1)."""
    denominator = base.top_prob + guide.top_prob
    share = guide.top_prob / denominator if denominator > 0 else 0.5
    return min(1.0, max(0.0, share + lam * base.prob(guide.top_key)))


def blend_pick(base: TopK, guide: TopK, alpha: float) -> tuple[MatchKey, float]:
    """argmax over the union of keys of alpha * P_g + (1 - alpha) * P_b.

    At alpha = 0 (1) the blend is the base's (guide's) own top-1 token: merging ids
    that share a string may rank another string first, and a neutral weight must
    change nothing. Other ties go to the key ranked first in the base list, then
    the guide list.
    """
    if alpha <= 0.0:
        return base.top_key, base.prob(base.top_key)
    if alpha >= 1.0:
        return guide.top_key, guide.prob(guide.top_key)
    scores: dict[MatchKey, float] = {}
    for k, p in zip(base.keys, base.probs):
        scores[k] = (1.0 - alpha) * p
    for k, p in zip(guide.keys, guide.probs):
        scores[k] = scores.get(k, 0.0) + alpha * p
    best_key = max(scores, key=lambda k: scores[k])  # max keeps the first of equals
    return best_key, scores[best_key]


class Blend(Strategy):
    """BlendIn (``alpha=None``: adaptive weight) or a fixed-weight blend ``blend:alpha``."""

    name = "blendin"
    consults = True

    def __init__(
        self, tau: float = TAU, alpha: float | None = None, lam: float = LAMBDA, top_k: int = TOP_K
    ) -> None:
        super().__init__(tau)
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1] (got {alpha}).")
        if lam < 0:
            raise InputError(f"lambda must be >= 0 (got {lam}).")
        if top_k < 1:
            raise InputError(f"k must be >= 1 (got {top_k}).")
        self.alpha = alpha
        self.lam = lam
        self.top_k = top_k
        self.name = "blendin" if alpha is None else f"blend:{alpha:g}"

    def intervene(self, at: Uncertain) -> dict[int, Decision]:
        out: dict[int, Decision] = {}
        for b in at.rows:
            base, guide = at.tops(b, self.top_k)
            out[b] = self.decide(base, guide, at.texts(base, guide))
        return out

    def decide(self, base: TopK, guide: TopK, text_of: Mapping[MatchKey, str]) -> Decision:
        alpha = auto_alpha(base, guide, self.lam) if self.alpha is None else self.alpha
        key, _ = blend_pick(base, guide, alpha)
        guide_id = guide.id_of(key)
        return Decision(
            key,
            text_of.get(key, ""),
            "blend",
            override=key != base.top_key,
            alpha=alpha,
            base_id=base.id_of(key),
            guide_ids=None if guide_id is None else (guide_id,),
        )


# Method name -> factory(tau=, lam=, top_k=, alpha=, protocol=) -> Strategy.


def _fixed(knobs: Knobs, argument: str | None) -> Blend:
    try:
        alpha = float(argument or "")
    except ValueError:
        raise InputError(
            f"Bad blend weight in 'blend:{argument}': use blend:<alpha>, alpha in [0, 1]."
        ) from None
    return Blend(tau=knobs.tau, alpha=alpha, lam=knobs.lam, top_k=knobs.top_k)


BLENDIN = Method(
    "blendin",
    "BlendIn: the two models' top-k blended at uncertain positions, adaptive weight",
    models="both",
    build=lambda knobs, _: Blend(
        tau=knobs.tau, alpha=knobs.alpha, lam=knobs.lam, top_k=knobs.top_k
    ),
    gated=True,
    default=True,
    versus=("nudging", "base"),
    records=("arbitration",),
)
BLEND = Method(
    "blend",
    "a fixed weight, e.g. blend:0.3",
    models="both",
    build=_fixed,
    gated=True,
    argument="ALPHA",
    needs_argument=True,
)
