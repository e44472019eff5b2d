"""An optional model judge for XSTest responses, beside the judge-free rules.

:mod:`~pairscope.judge.verdict` (the prompt and the strict reading of a verdict),
:mod:`~pairscope.judge.cache` (verdicts on disk), :mod:`~pairscope.judge.model` (the
judge model, loaded through :func:`pairscope.models.load_model`),
:mod:`~pairscope.judge.compare` (rules vs. judge) and :mod:`~pairscope.judge.runs`
(``--judge`` on a run directory or a scored file).
"""
