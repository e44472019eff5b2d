"""What users read is self-contained: the README and docs/ cite no folder outside the
repository and no specification they do not have, every environment variable the code
reads is documented, every link resolves, and every "docs/methods.md §N" in code,
tests and help text names a section that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pairscope.cli import app

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
USER_TEXT = [README, *DOCS]
SOURCES = sorted((REPO / "pairscope").rglob("*.py"))

# A commit hash: 7 to 40 hex digits with a letter and a digit among them.
HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
FORBIDDEN = re.compile(r"\.\./shared|DESIGN(\.md| §)|[Ii]ssue #?\d|/work/|this round")


def test_the_readme_is_a_users_guide_of_under_250_lines():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 250
    for must in ("make demo", "make test", "pairscope check", "pairscope probe --base",
                 "vllm:http://", "--device cuda", "## Exit codes", "## Licence",
                 "arXiv:2410.09300", "To Intervene or Not"):  # fmt: skip
        assert must in text, must


@pytest.mark.parametrize("path", USER_TEXT, ids=lambda p: p.name)
def test_user_text_cites_nothing_outside_the_repository(path):
    text = path.read_text(encoding="utf-8")
    assert not FORBIDDEN.search(text), FORBIDDEN.search(text)
    assert not HASH.search(text), HASH.search(text)


def test_every_environment_variable_the_code_reads_is_documented():
    names = set()
    for source in SOURCES:
        names |= set(re.findall(r"PAIRSCOPE_[A-Z_]+[A-Z]", source.read_text(encoding="utf-8")))
    assert "PAIRSCOPE_VLLM_VENV" in names and "PAIRSCOPE_DATA_DIR" in names
    readme = README.read_text(encoding="utf-8")
    served = (REPO / "docs" / "vllm.md").read_text(encoding="utf-8")

    def documented(name: str) -> bool:
        # The served-model family has one README row pointing at docs/vllm.md's table.
        if name.startswith("PAIRSCOPE_SERVED_") and "`PAIRSCOPE_SERVED_*`" in readme:
            return f"`{name}`" in served
        return f"`{name}`" in readme

    assert sorted(n for n in names if not documented(n)) == []


@pytest.mark.parametrize("path", USER_TEXT, ids=lambda p: p.name)
def test_every_relative_link_resolves(path):
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (path.parent / target).exists(), f"{path.name}: {target}"


def test_every_methods_section_cited_exists():
    headings = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\d+)\. ", headings, flags=re.M))
    assert sections == {"1", "2", "3", "4", "5"}
    assert "### NUDGING's two protocols" in headings
    cited = set()
    for path in [*SOURCES, *sorted((REPO / "tests").rglob("*.py")), *USER_TEXT]:
        cited |= set(re.findall(r"methods\.md\)? §(\d+)", path.read_text(encoding="utf-8")))
    assert cited and cited <= sections, cited - sections


@pytest.mark.parametrize(
    "command", [[], ["check"], ["probe"], ["evaluate"], ["generate"], ["score"], ["report"]]
)
def test_help_names_no_folder_outside_the_repository(command):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert not FORBIDDEN.search(result.output), FORBIDDEN.search(result.output)
