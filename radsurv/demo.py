"""`radsurv demo`: the whole pipeline on the embedded synthetic cohort, one stage after another.

Every stage makes the one library call the matching ``radsurv`` command makes (the commands
are thin callers of the same functions), so the demo exercises what a user types:

synth -> manifest -> segment train (on a training split) -> segment predict (all cases) ->
segment evaluate (held-out cases) -> extract-features (predicted masks) -> robustness (the same
features on the expert masks, ICC(2,1) of every feature between expert and predicted masks) ->
survival (CV report against the age baselines; once with all features, once with the robust ones,
ICC >= 0.75) -> classify (pseudoprogression CV report) -> ``OUT/index.html`` linking every output
with a one-screen summary.

A failing stage is recorded and the stages that do not depend on it still run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radsurv.errors import RadsurvError

logger = logging.getLogger(__name__)

DEFAULT_CASES = 48
DEFAULT_SHAPE: tuple[int, int, int] = (40, 96, 96)
HELD_OUT_FRACTION = 0.25
ROBUST_MIN_ICC = 0.75  # Koo & Li (2016): good reliability


@dataclass
class DemoSettings:
    """What the demo runs on and how long it may train."""

    out: Path
    cases: int = DEFAULT_CASES
    seed: int = 0
    shape: tuple[int, int, int] = DEFAULT_SHAPE
    train_epochs: int = 40  # a fixed budget: the same model on a busy or a quiet machine
    train_minutes: float | None = None  # optional wall-clock cap on top of train_epochs
    device: str = "auto"
    jobs: int | None = None
    cv: str = "5x3"
    permutations: int = 10


@dataclass
class StageResult:
    """Outcome of one stage."""

    name: str
    ok: bool
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)
    error: str = ""
    skipped: bool = False


@dataclass
class DemoSummary:
    """All stages' results plus the headline figures shown on the index page."""

    settings: DemoSettings
    stages: list[StageResult]
    headline: dict[str, Any]
    index: Path

    @property
    def ok(self) -> bool:
        """True when every stage ran and succeeded."""
        return all(s.ok for s in self.stages)

    @property
    def seconds(self) -> float:
        """Total wall time of the stages."""
        return sum(s.seconds for s in self.stages)


def _split_manifest(manifest: Path, out_dir: Path, fraction: float, seed: int) -> tuple[Path, Path]:
    """Write train / held-out manifests (same folder, so relative paths stay valid)."""
    import pandas as pd

    table = pd.read_csv(manifest, keep_default_na=False, dtype=str)
    rng = np.random.default_rng(seed)
    held = rng.permutation(len(table))[: max(1, int(round(fraction * len(table))))]
    is_held = np.zeros(len(table), dtype=bool)
    is_held[held] = True
    train_path = out_dir / "manifest_train.csv"
    test_path = out_dir / "manifest_heldout.csv"
    table[~is_held].to_csv(train_path, index=False)
    table[is_held].to_csv(test_path, index=False)
    return train_path, test_path


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _stage_plan(s: DemoSettings) -> list[tuple[str, Callable[[], dict[str, str]], list[str]]]:
    """(name, action, names of the stages it needs) in running order."""
    out = s.out
    cohort = out / "cohort"
    manifest = out / "data_manifest.csv"
    seg = out / "segmentation"
    feats = out / "features"

    def synth() -> dict[str, str]:
        from radsurv.data.synthetic import synthesize_cohort

        synthesize_cohort(cohort, n_cases=s.cases, seed=s.seed, shape=s.shape)
        return {"cohort": "cohort/", "truth": "cohort/truth.json"}

    def manifest_stage() -> dict[str, str]:
        from radsurv.data.manifest import build_manifest, write_manifest

        df = build_manifest(cohort, relative_to=manifest.resolve().parent)
        write_manifest(df, manifest)
        bad = df[df["problem"] != ""]
        if len(bad):
            raise RadsurvError(f"manifest: {len(bad)} case(s) with problems, e.g. "
                               f"{bad['case_id'].iloc[0]}: {bad['problem'].iloc[0]}")  # fmt: skip
        return {"manifest": manifest.name}

    def train() -> dict[str, str]:
        from radsurv.segmentation import train_segmentation

        seg.mkdir(parents=True, exist_ok=True)
        train_m, _ = _split_manifest(manifest, out, HELD_OUT_FRACTION, s.seed)
        train_segmentation(train_m, seg / "model.pt", time_limit=s.train_minutes,
                           epochs=s.train_epochs,
                           device=s.device, seed=s.seed, progress=False)  # fmt: skip
        return {"model": "segmentation/model.pt", "training split": train_m.name}

    def predict() -> dict[str, str]:
        from radsurv.segmentation import predict_masks

        records = predict_masks(seg / "model.pt", manifest, seg / "masks", device=s.device)
        failed = [r for r in records if r["status"] == "failed"]
        if failed:
            raise RadsurvError(f"segment predict: {len(failed)} case(s) failed, e.g. "
                               f"{failed[0]['case_id']}: {failed[0]['error']}")  # fmt: skip
        return {"predicted masks": "segmentation/masks/"}

    def evaluate() -> dict[str, str]:
        from radsurv.segmentation import evaluate_masks

        held = out / "manifest_heldout.csv"
        result = evaluate_masks(seg / "masks", held, json_path=seg / "evaluation.json",
                                csv_path=seg / "evaluation.csv")  # fmt: skip
        if result.failed:
            raise RadsurvError(f"segment evaluate: cases failed: {result.failed}")
        return {"Dice/HD95 (held-out)": "segmentation/evaluation.json",
                "per case": "segmentation/evaluation.csv",
                "masks to look at": "segmentation/masks/report.html"}  # fmt: skip

    def _features(name: str, masks: Any) -> None:
        from radsurv.features.runner import extract_features

        result = extract_features(manifest, masks=masks, jobs=s.jobs, output=feats / name,
                                  progress=False)  # fmt: skip
        if result.failed:
            raise RadsurvError(f"extract-features: failed cases {', '.join(result.failed)}")

    def features_predicted() -> dict[str, str]:
        _features("predicted.csv", seg / "masks")
        return {"features (predicted masks)": "features/predicted.csv",
                "status": "features/predicted.status.csv"}  # fmt: skip

    def robustness() -> dict[str, str]:
        # expert masks are the reference ("original"), the predicted ones one more rater
        from radsurv.features.robustness import compute_robustness

        result = compute_robustness(manifest, perturbations="none",
                                    masks=[f"predicted={seg / 'masks'}"], seed=s.seed,
                                    jobs=s.jobs, output=feats / "robustness.csv")  # fmt: skip
        if result.failed:
            raise RadsurvError(f"robustness: failed cases {', '.join(result.failed)}")
        return {"ICC per feature": "features/robustness.csv",
                "report": "features/robustness.html",
                "features, both masks": "features/robustness_features.csv"}  # fmt: skip

    def survival_run(folder: str, robustness: Path | None = None) -> dict[str, str]:
        from radsurv.study import SurvivalStudy

        study = SurvivalStudy(manifest=manifest, features=feats / "predicted.csv",
                              covariates="age,resection", models=["cox", "xgb-cox"], cv=s.cv,
                              seed=s.seed, robustness=robustness,
                              min_icc=ROBUST_MIN_ICC)  # fmt: skip
        study.run().save(out / folder)
        return {"report": f"{folder}/report.html", "metrics": f"{folder}/metrics.json",
                "predictions": f"{folder}/predictions.csv"}  # fmt: skip

    def survival() -> dict[str, str]:
        return survival_run("survival")

    def survival_robust() -> dict[str, str]:
        return survival_run("survival_robust", feats / "robustness.csv")

    def classify() -> dict[str, str]:
        from radsurv.study import BinaryStudy

        study = BinaryStudy(feats / "predicted.csv", manifest=manifest,
                            positive="pseudoprogression", models=["logreg", "xgb"], cv=s.cv,
                            seed=s.seed, permutations=s.permutations)  # fmt: skip
        study.run().save(out / "pseudoprogression")
        return {"report": "pseudoprogression/report.html",
                "metrics": "pseudoprogression/metrics.json",
                "predictions": "pseudoprogression/predictions.csv"}  # fmt: skip

    return [
        ("Synthesize cohort", synth, []),
        ("Build manifest", manifest_stage, ["Synthesize cohort"]),
        ("Train segmentation", train, ["Build manifest"]),
        ("Predict masks", predict, ["Train segmentation"]),
        ("Evaluate segmentation", evaluate, ["Predict masks"]),
        ("Features from predicted masks", features_predicted, ["Predict masks"]),
        ("Feature robustness: expert vs predicted masks", robustness, ["Predict masks"]),
        ("Survival report", survival, ["Features from predicted masks"]),
        (
            "Survival report, robust features only",
            survival_robust,
            ["Features from predicted masks", "Feature robustness: expert vs predicted masks"],
        ),
        ("Pseudoprogression report", classify, ["Features from predicted masks"]),
    ]


def _headline(out: Path) -> dict[str, Any]:
    """The figures the index page shows, read back from the stages' own outputs."""
    head: dict[str, Any] = {}
    seg = _read_json(out / "segmentation" / "evaluation.json")
    if seg.get("mean"):
        head["dice"] = {
            r: seg["mean"][r].get("dice") for r in ("WT", "TC", "ET") if r in seg["mean"]
        }
    path = out / "features" / "predicted.csv"
    if path.exists():
        with path.open() as f:
            head["features_predicted"] = len(f.readline().strip().split(",")) - 1
    if (out / "features" / "robustness.csv").exists():
        head["robustness"] = _robustness_summary(
            out / "features" / "robustness.csv", out / "survival_robust" / "metrics.json"
        )
    head["c_index"] = _metric_by_model(out / "survival" / "metrics.json", "harrell_c")
    head["c_index_robust"] = _metric_by_model(out / "survival_robust" / "metrics.json", "harrell_c")
    head["auc"] = _metric_by_model(out / "pseudoprogression" / "metrics.json", "roc_auc")
    return head


def _metric_by_model(metrics_json: Path, metric: str) -> dict[str, Any]:
    """``{model or baseline name: {"mean", "sd", "ci95"}}`` of one metric of a report."""
    doc = _read_json(metrics_json)
    return {
        name: entry[metric]
        for group in ("models", "baselines")
        for name, entry in doc.get(group, {}).items()
        if metric in entry
    }


def _robustness_summary(robustness_csv: Path, robust_metrics: Path) -> dict[str, Any]:
    """ICC(2,1) between expert- and predicted-mask features, and what the robust run kept."""
    import pandas as pd

    icc = pd.read_csv(robustness_csv)["icc"].dropna()
    kept = _read_json(robust_metrics).get("cohort", {}).get("robustness", {})
    return {
        "n_features": int(len(icc)),
        "median_icc": float(icc.median()) if len(icc) else float("nan"),
        "fraction_ge_075": float((icc >= 0.75).mean()) if len(icc) else float("nan"),
        "fraction_ge_09": float((icc >= 0.9).mean()) if len(icc) else float("nan"),
        "min_icc": ROBUST_MIN_ICC,
        "n_kept": kept.get("n_kept"),
        "n_dropped": kept.get("n_dropped"),
    }


def run_demo(
    settings: DemoSettings, on_stage: Callable[[int, int, str], None] | None = None
) -> DemoSummary:
    """Run every stage under ``settings.out`` and write ``index.html``.

    Parameters
    ----------
    settings
        Output folder, cohort size, training minutes, device, ...
    on_stage
        Called as ``on_stage(i, n, message)`` when a stage starts and ends (progress display).
    """
    settings.out.mkdir(parents=True, exist_ok=True)
    plan = _stage_plan(settings)
    results: dict[str, StageResult] = {}
    for i, (name, action, needs) in enumerate(plan, start=1):
        failed_needs = [n for n in needs if not results[n].ok]
        if failed_needs:
            results[name] = StageResult(
                name, False, 0.0, error=f"skipped: needs {', '.join(failed_needs)}", skipped=True
            )
            if on_stage:
                on_stage(i, len(plan), f"{name}: skipped (needs {', '.join(failed_needs)})")
            continue
        if on_stage:
            on_stage(i, len(plan), f"{name} ...")
        t0 = time.perf_counter()
        try:
            outputs = action()
            results[name] = StageResult(name, True, time.perf_counter() - t0, outputs)
        except Exception as exc:  # a failing stage is recorded; the stages not needing it go on
            logger.error("stage %r failed: %s", name, exc)
            results[name] = StageResult(
                name, False, time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}"
            )
        r = results[name]
        if on_stage:
            status = "done" if r.ok else f"FAILED: {r.error}"
            on_stage(i, len(plan), f"{name}: {status} ({r.seconds:.0f} s)")
    stages = [results[name] for name, _, _ in plan]
    headline = _headline(settings.out)
    index = write_index(settings, stages, headline)
    return DemoSummary(settings, stages, headline, index)


def write_index(
    settings: DemoSettings, stages: list[StageResult], headline: dict[str, Any]
) -> Path:
    """Write ``OUT/index.html``: a one-screen summary linking every stage's outputs."""
    from radsurv.evaluation.report import render_report

    context = {
        "title": "radsurv demo",
        "subtitle": (
            f"{settings.cases} synthetic BraTS-like cases, shape {settings.shape} (z, y, x), "
            f"seed {settings.seed}; total {sum(s.seconds for s in stages):.0f} s"
        ),
        "stages": stages,
        "headline": headline,
        "settings": {
            "cases": settings.cases,
            "shape (z, y, x)": settings.shape,
            "seed": settings.seed,
            "segmentation training (epochs)": settings.train_epochs,
            "segmentation time cap (minutes)": settings.train_minutes or "none",
            "device": settings.device,
            "cross-validation": settings.cv,
            "label permutations": settings.permutations,
        },
    }
    return render_report("demo_index.html.j2", context, settings.out / "index.html")
