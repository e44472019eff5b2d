"""The report's drawing basics: palette, styled figures on the Agg canvas, PNG bytes,
and the reading of the summary's numbers and estimates in their JSON form."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
# Colour-blind-safe palette (Okabe-Ito), one colour per method or model, in order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999")
MODEL_COLOURS = {"base": "#0072B2", "guide": "#E69F00"}
TEXT = "#222222"
GRID = "#e3e3e3"


def figure(width: float, height: float, rows: int = 1, **grid: Any) -> tuple[Figure, Any]:
    """A figure with a ``rows x 1`` grid of axes, styled for the report."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, 1, squeeze=False, **grid)[:, 0]
    for ax in axes:
        _style(ax)
    return fig, axes


def _style(ax: Axes) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#888888")
    ax.tick_params(colors=TEXT, labelsize=8)
    ax.grid(True, color=GRID, linewidth=0.6)
    ax.set_axisbelow(True)


def to_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def blank_png(message: str, width: float = 6.0, height: float = 1.2) -> bytes:
    fig, (ax,) = figure(width, height)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", color="#666666", fontsize=9)
    return to_png(fig)


def finite(x: Any) -> float | None:
    """A finite float, or None for None, NaN, infinities and non-numbers."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def interval(estimate: Any) -> tuple[float | None, float | None, float | None]:
    """``(point, low, high)`` of an estimate mapping; None where missing or undefined."""
    if not isinstance(estimate, Mapping):
        return (None, None, None)
    return (
        finite(estimate.get("point")),
        finite(estimate.get("low")),
        finite(estimate.get("high")),
    )
