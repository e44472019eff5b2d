"""`pairscope check` on the embedded pair: every item, in under 10 s, from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.unit.test_check import EVERY_MODEL_CHECK

pytestmark = pytest.mark.slow


def test_check_of_the_embedded_pair_is_fast_and_complete(real_pair):
    # real_pair has converted both models into the cache, as a CI job's cached run has.
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pairscope", "check", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    wall = time.perf_counter() - started
    # The goal is 10 s on a machine that is not oversubscribed; with more runnable
    # processes than cores a process gets about cores/load of one, so the bound scales.
    busy = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    print(
        f"\npairscope check on the embedded pair: {wall:.1f} s (whole process); "
        f"bound {10 * busy:.0f} s at load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
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
    assert wall < 10.0 * busy
