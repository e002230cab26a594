"""radsurv CLI commands: classify (pseudoprogression or any binary endpoint)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from radsurv.cli.app import app

logger = logging.getLogger(__name__)


def _split(values: list[str] | None) -> list[str]:
    """``["logreg,xgb", "rf"]`` -> ``["logreg", "xgb", "rf"]``."""
    out: list[str] = []
    for v in values or []:
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


def _clinical_source(clinical: Path | None, manifest: Path | None):
    """The table covariates come from: a survival table, else the manifest, else None."""
    import pandas as pd

    from radsurv.clinical import read_survival_table
    from radsurv.evaluation.classify import ClassificationInputError

    if clinical is not None:
        return read_survival_table(clinical), str(clinical)
    if manifest is not None:
        if not manifest.is_file():
            raise ClassificationInputError(f"{manifest}: manifest not found")
        table = pd.read_csv(manifest, dtype={"case_id": str})
        if "case_id" not in table.columns:
            raise ClassificationInputError(f"{manifest}: no case_id column; is it a manifest?")
        return table.set_index("case_id"), str(manifest)
    return None, ""


@app.command("classify")
def classify(
    features: Path = typer.Option(..., "--features", help="Features table (one row per case)."),
    labels: Path | None = typer.Option(
        None, "--labels", help="Label table (case id + label); default: the manifest's labels."
    ),
    label_column: str | None = typer.Option(
        None, "--label-column", help="Label column (default: label/target/outcome/...)."
    ),
    positive: str | None = typer.Option(
        None, "--positive", help="Positive class as written, e.g. pseudoprogression or LGG."
    ),
    negative: str | None = typer.Option(
        None, "--negative", help="Negative class (default: every other label)."
    ),
    drop_unknown: bool = typer.Option(
        False, "--drop-unknown", help="Leave out rows with missing/unknown labels (reported)."
    ),
    model: list[str] | None = typer.Option(
        None, "--model", help="logreg, xgb, rf (repeatable or comma-separated; default logreg)."
    ),
    covariates: str | None = typer.Option(
        None, "--covariates", help="Clinical covariates, e.g. age,resection."
    ),
    clinical: Path | None = typer.Option(
        None, "--clinical", help="survival_info.csv to take covariates from."
    ),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="data_manifest.csv (covariates, and labels without --labels)."
    ),
    cv: str = typer.Option("5x5", "--cv", help="FOLDSxREPEATS."),
    seed: int = typer.Option(0, "--seed", help="Seed of folds, models, permutations."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Parallel processes for the folds."),
    k: int = typer.Option(20, "--k", "-k", help="Features kept by in-fold selection (0: all)."),
    nested: bool = typer.Option(False, "--nested", help="Tune hyper-parameters by inner CV."),
    permutations: int = typer.Option(
        20, "--permutations", help="Label permutations for the AUC test (0: off)."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    robustness: Path | None = typer.Option(
        None, "--robustness", help="robustness.csv: keep only features with ICC >= --min-icc."
    ),
    min_icc: float = typer.Option(0.75, "--min-icc", help="ICC(2,1) threshold of --robustness."),
) -> None:
    """Cross-validate classifiers for a binary endpoint against a clinical baseline."""
    from radsurv.clinical import join_tables
    from radsurv.clinical_labels import read_binary_labels
    from radsurv.evaluation.classification_report import write_classification_outputs
    from radsurv.evaluation.classify import (
        ClassificationInputError,
        ClassifySettings,
        covariate_frame,
        read_feature_table,
        run_classification,
    )

    label_path = labels or manifest
    if label_path is None:
        raise ClassificationInputError("no labels: pass --labels FILE (or --manifest M)")
    parsed = read_binary_labels(
        label_path,
        label_column=label_column,
        positive=positive,
        negative=negative,
        drop_unknown=drop_unknown,
    )
    typer.echo(f"positive class: '{parsed.positive}' (label 1); {parsed.summary()}")
    feats = read_feature_table(features)
    from radsurv.features.icc import apply_robustness_option

    robust_notes: list[str] = []
    robust_cohort: dict[str, object] = {}
    cov_list = [c.strip() for c in (covariates or "").split(",") if c.strip()]
    feats = apply_robustness_option(
        feats, robustness, min_icc, cov_list, robust_notes, robust_cohort
    )
    joined = join_tables(feats, parsed.y, left_name=features.name, right_name=Path(label_path).name)
    warnings: list[str] = []
    cohort: dict[str, object] = {
        "features file": str(features),
        "labels file": parsed.source,
        "join features + labels": joined.summary(),
        **robust_cohort,
    }
    warnings += robust_notes
    if joined.only_left or joined.only_right:
        warnings.append(f"ids not matched between features and labels: {joined.summary()}")
    table = joined.table
    cov_names = [c.strip() for c in (covariates or "").split(",") if c.strip()]
    cov_columns: list[str] = []
    if cov_names:
        source, source_name = _clinical_source(clinical, manifest)
        if source is None:
            missing = [c for c in cov_names if c not in feats.columns]
            if missing:
                raise ClassificationInputError(
                    f"covariates {missing} are not in {features}; pass --clinical or --manifest"
                )
            cov_columns = cov_names
        else:
            cov = covariate_frame(cov_names, source, source_name)
            overlap = [c for c in cov.columns if c in table.columns]
            cov = cov.drop(columns=overlap)  # a feature column of the same name wins
            cj = join_tables(
                table[[]], cov, how="left", left_name="cohort", right_name=Path(source_name).name
            )
            if cj.only_left:
                warnings.append(
                    f"{len(cj.only_left)} cases have no row in {source_name} "
                    f"(covariates imputed in-fold): {', '.join(cj.only_left[:5])}"
                )
            cohort["join cohort + covariates"] = cj.summary()
            table = table.join(cj.table)
            cov_columns = overlap + list(cov.columns)
    y = table.pop("label").astype(int)
    settings = ClassifySettings(
        models=tuple(_split(model) or ["logreg"]),
        cv=cv,
        seed=seed,
        k=k if k > 0 else None,
        nested=nested,
        permutations=permutations,
        n_jobs=jobs,
    )
    result = run_classification(
        table, y, settings, covariates=cov_columns, source=f"labels {parsed.source}"
    )
    paths = write_classification_outputs(
        result,
        out,
        labels=parsed,
        cohort=cohort,
        warnings=warnings,
        settings={
            "features": str(features),
            "labels": str(label_path),
            "label column": parsed.label_column,
            "positive class": parsed.positive,
            "covariates": ",".join(cov_columns) or "none",
            "clinical": str(clinical or manifest or ""),
        },
        title=f"Classification: {parsed.positive} vs {parsed.negative}",
    )
    for group in ("models", "baselines"):
        for name, m in result.metrics[group].items():
            auc = m["roc_auc"]
            line = (
                f"{name:>10}: ROC AUC {auc['mean']:.3f} ± {auc['sd']:.3f} "
                f"[95% CI {auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]"
            )
            if "permutation_test" in m:
                line += f", permutation p {m['permutation_test']['p_value']:.3f}"
            typer.echo(line + (" (baseline)" if group == "baselines" else ""))
    typer.echo(f"report: {paths['report']}")
