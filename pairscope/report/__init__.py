"""The self-contained HTML report and its figures, built only from a run directory's files.

matplotlib loads inside the plotting functions, so importing this package stays cheap.
"""

from __future__ import annotations

from pairscope.report.html import compare_rows, render_compare, render_report
from pairscope.report.plots import save_figures

__all__ = ["compare_rows", "render_compare", "render_report", "save_figures"]
