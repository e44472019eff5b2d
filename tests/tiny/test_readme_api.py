"""The README's Python example runs as written, on the tiny random pair in place of the
embedded one (same calls, same objects)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_python_example_runs(tiny_dirs):
    [code] = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert "embedded:gemma-3-270m" in code and "embedded:smollm2-135m-instruct" in code
    code = code.replace("embedded:gemma-3-270m", str(tiny_dirs["base"]))
    code = code.replace("embedded:smollm2-135m-instruct", str(tiny_dirs["guide"]))
    code = code.replace("max_new_tokens=64", "max_new_tokens=6")
    printed = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - the README's own code
    result = scope["result"]
    assert result.positions <= 6 and result.text in printed.getvalue()
    assert {step.source for step in result.steps} <= {"base", "guide"}
