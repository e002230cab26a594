"""`radsurv demo` end to end on a tiny cohort; every HTML report it writes opens in Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radsurv.demo import DemoSettings, run_demo
from radsurv.evaluation.browser import check_html_in_browser, find_chromium


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    settings = DemoSettings(
        out=out, cases=16, shape=(16, 48, 48), train_epochs=6, device="cpu", jobs=2,
        cv="3x1", permutations=0,
    )  # fmt: skip
    messages: list[str] = []
    summary = run_demo(settings, on_stage=lambda i, n, msg: messages.append(f"[{i}/{n}] {msg}"))
    return summary, messages


@pytest.mark.slow
def test_demo_runs_every_stage(tiny_demo) -> None:
    summary, messages = tiny_demo
    failed = {s.name: s.error for s in summary.stages if not s.ok}
    assert not failed, failed
    assert len(summary.stages) == 10 and any("done" in m for m in messages)
    out = summary.settings.out
    for stage in summary.stages:  # every linked output exists
        for href in stage.outputs.values():
            assert (out / href).exists(), href
    head = summary.headline
    assert set(head["dice"]) == {"WT", "TC", "ET"}
    assert head["features_predicted"] > 100
    # ICC(2,1) of every feature between expert and predicted masks replaces the Spearman summary
    rob = head["robustness"]
    assert rob["n_features"] <= head["features_predicted"] and 0 < rob["n_kept"] < rob["n_features"]
    assert 0 <= rob["fraction_ge_09"] <= rob["fraction_ge_075"] <= 1
    assert {"cox", "age"} <= set(head["c_index"]) and "logreg" in head["auc"]
    assert {"cox", "age"} <= set(head["c_index_robust"])  # survival C with robust features only
    robust = json.loads((out / "survival_robust" / "metrics.json").read_text())
    assert robust["cohort"]["robustness"]["n_kept"] == rob["n_kept"]
    evaluation = json.loads((out / "segmentation" / "evaluation.json").read_text())
    held_out = (out / "manifest_heldout.csv").read_text().count("\n") - 1
    assert len(evaluation["cases"]) == held_out  # Dice is reported on cases not trained on


@pytest.mark.slow
@pytest.mark.skipif(
    find_chromium() is None, reason="no Chromium on PATH (apt-get install chromium)"
)
@pytest.mark.parametrize(
    "report",
    [
        "index.html",
        "survival/report.html",
        "survival_robust/report.html",
        "features/robustness.html",
        "pseudoprogression/report.html",
    ],
)
def test_demo_reports_open_in_a_real_browser(tiny_demo, report: str, screenshot_dir: Path):
    summary, _ = tiny_demo
    html = summary.settings.out / report
    shot = screenshot_dir / f"demo_{report.replace('/', '_').replace('.html', '')}.png"
    check = check_html_in_browser(html, shot)
    assert not check.console_errors, check.console_errors
    assert check.images == check.images_loaded
    if report != "index.html":
        assert check.images >= 3  # the reports' figures are embedded and load
    assert shot.stat().st_size > 10_000
