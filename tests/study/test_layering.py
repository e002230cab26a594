"""Library code stays a library: only radsurv/cli imports radsurv.cli or configures logging."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "radsurv"


def _library_modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts]


def test_no_library_module_imports_the_cli():
    bad = [
        str(p.relative_to(PACKAGE))
        for p in _library_modules()
        if re.search(
            r"^\s*(from radsurv\.cli\b|import radsurv\.cli\b|from radsurv import cli\b)",
            p.read_text(),
            flags=re.M,
        )  # fmt: skip
    ]
    assert bad == []


def test_library_code_never_configures_logging():
    bad = [
        str(p.relative_to(PACKAGE))
        for p in _library_modules()
        if re.search(r"logging\.basicConfig|\.addHandler\(|dictConfig", p.read_text())
    ]
    assert bad == []
