"""`pairscope check` on the embedded pair: every item, from the cache.

Its wall time is measured by bench/metrics.py, not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.unit.test_check import EVERY_MODEL_CHECK

pytestmark = pytest.mark.slow


def test_check_of_the_embedded_pair_is_complete(real_pair):
    # real_pair has converted both models into the cache, as a CI job's cached run has.
    done = subprocess.run(
        [sys.executable, "-m", "pairscope", "check", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for model in ("base", "guide"):
        checks = {i["check"] for i in report["items"] if i["model"] == model}
        assert EVERY_MODEL_CHECK <= checks, EVERY_MODEL_CHECK - checks
    status = {(i["model"], i["check"]): i["status"] for i in report["items"]}
    assert status[("pair", "vocabulary overlap")] == "PASS"
    assert status[("guide", "chat template")] == "PASS"
    assert status[("base", "single-token spaces")] == "PASS"  # Gemma keeps its spaces
    assert "converted copy" in next(
        i["found"] for i in report["items"] if (i["model"], i["check"]) == ("base", "model files")
    )
