"""Every `radsurv` invocation in the README's code blocks still parses (option names and
subcommands), and the plain clinical-only survival invocation runs as written."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radsurv.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_invocations() -> list[str]:
    """Command lines (continuations joined, optional [..] parts unbracketed) in code blocks."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in README.read_text().splitlines():
        fence = line.strip().startswith("```")
        if fence and current is None:
            lang = line.strip()[3:].strip()
            current = [] if lang in ("", "bash", "sh") else ["# not shell"]
        elif fence:
            if current and current[0] != "# not shell":
                blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    out = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            m = re.match(r"^(?:\.venv/bin/)?radsurv\s+(.*)$", line)
            if m:
                # a synopsis: [--a x|y] takes the first choice, [--x/--no-x] the first flag
                args = re.sub(r"\[([^\]]*)\]", r"\1", m.group(1))
                args = re.sub(r"(\S+)\|\S+", r"\1", re.sub(r"(\S+)\|\S+", r"\1", args))
                args = re.sub(r"(--[\w-]+)/--[\w-]+", r"\1", args)
                out.append(args)
    return out


INVOCATIONS = readme_invocations()


def test_readme_has_the_study_invocations():
    joined = "\n".join(INVOCATIONS)
    for sub in ("survival fit", "survival predict", "survival evaluate", "classify fit"):
        assert sub in joined, sub
    assert len(INVOCATIONS) >= 15


@pytest.mark.parametrize("args", INVOCATIONS)
def test_readme_invocation_parses(args: str):
    """Unknown options or subcommands fail before --help (eager) is honoured."""
    argv = shlex.split(args)
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, (args, result.output)
    assert "Usage" in result.output


def test_readme_clinical_only_survival_runs(cohort_files, tmp_path):
    """`radsurv survival --clinical survival_info.csv --covariates age --out surv_age`."""
    out = tmp_path / "surv_age"
    args = ["survival", "--clinical", str(cohort_files["train_brats"]), "--covariates", "age",
            "--cv", "3x1", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc["baselines"]) == {"age", "age+resection"}
    assert "harrell_c" in doc["models"]["cox"] and "harrell_c" in doc["baselines"]["age"]
    assert "Harrell C" in result.output and "(baseline)" in result.output
