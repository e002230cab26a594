"""The HTML page of ``radsurv robustness``: ICC(2,1) distributions and Koo & Li bands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from radsurv.evaluation.report import (
    dataframe_rows,
    figure_to_data_uri,
    format_number,
    new_figure,
    render_report,
)
from radsurv.features.icc import KOO_LI_BANDS

if TYPE_CHECKING:
    from radsurv.features.robustness import RobustnessResult

GROUPS = (
    ("feature_class", "feature class"),
    ("image_type", "image type"),
    ("modality", "modality (none: shape)"),
    ("region", "region"),
)


def _box_figure(table: pd.DataFrame, column: str, label: str) -> str:
    groups = [(str(k), g["icc"].dropna().to_numpy()) for k, g in table.groupby(column, sort=True)]
    groups = [(k, v) for k, v in groups if v.size]
    fig, ax = new_figure((7.0, max(2.0, 0.45 * len(groups) + 1.2)))
    if groups:
        ax.boxplot([v for _, v in groups], orientation="horizontal", widths=0.6, showfliers=True)
        ax.set_yticks(range(1, len(groups) + 1), [f"{k} (n={v.size})" for k, v in groups])
    for x, style in ((0.75, "--"), (0.9, ":")):
        ax.axvline(x, color="grey", linestyle=style, linewidth=1)
    ax.set_xlabel("ICC(2,1)")
    ax.set_title(f"ICC by {label}")
    ax.set_xlim(min(-0.1, *(float(v.min()) for _, v in groups)) if groups else -0.1, 1.02)
    return figure_to_data_uri(fig)


def _histogram(table: pd.DataFrame) -> str:
    icc = table["icc"].dropna().to_numpy()
    fig, ax = new_figure((7.0, 3.2))
    if icc.size:
        ax.hist(np.clip(icc, -0.5, 1.0), bins=30, color="#4a6fa5")
    for x, style in ((0.75, "--"), (0.9, ":")):
        ax.axvline(x, color="grey", linestyle=style, linewidth=1)
    ax.set_xlabel("ICC(2,1) (values below -0.5 shown at -0.5)")
    ax.set_ylabel("features")
    return figure_to_data_uri(fig)


def _fractions(table: pd.DataFrame, column: str) -> dict[str, Any]:
    rows = {}
    for key, g in table.groupby(column, sort=True):
        icc = g["icc"].dropna()
        rows[str(key)] = {
            "features": len(g),
            "median ICC": float(icc.median()) if len(icc) else np.nan,
            "ICC >= 0.75": float((icc >= 0.75).mean()) if len(icc) else np.nan,
            "ICC >= 0.9": float((icc >= 0.9).mean()) if len(icc) else np.nan,
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = column
    return dataframe_rows(frame)


def write_robustness_report(result: RobustnessResult, path: str | Path) -> Path:
    """Write the self-contained HTML page of a robustness run."""
    table = result.robustness
    icc = table["icc"].dropna()
    bands = []
    upper = np.inf
    for bound, name in KOO_LI_BANDS:
        n = int(((icc >= bound) & (icc < upper)).sum())
        bands.append({"band": name, "range": _range(bound, upper), "n": n,
                      "fraction": format_number(n / len(icc) if len(icc) else np.nan)})  # fmt: skip
        upper = bound
    prov = result.provenance
    spread = result.spread
    spread_rows = None
    if len(spread):
        med = spread.groupby("feature")["cv"].median().rename("median CV over cases")
        wide = spread.pivot(index="feature", columns="case_id", values="cv")
        wide.columns = [f"CV {c}" for c in wide.columns]
        summary = pd.concat([med, wide], axis=1).sort_values("median CV over cases")
        summary.index.name = "feature"
        spread_rows = {
            "most": dataframe_rows(summary.head(10)),
            "least": dataframe_rows(summary.tail(10)),
            "n": len(summary),
        }
    worst = table.sort_values("icc").head(15).set_index("feature")
    context = {
        "title": "radsurv feature robustness",
        "subtitle": (
            f"{prov.get('n_ok')} case(s), {len(prov.get('perturbations', []))} raters "
            f"({', '.join(prov.get('perturbations', []))}), {len(table)} features"
        ),
        "warnings": [
            f"case {cid} failed: {err}"
            for cid, err in result.status.loc[
                result.status["status"] == "failed", ["case_id", "error"]
            ].itertuples(index=False)
        ],
        "n_features": len(table),
        "n_defined": len(icc),
        "frac75": format_number(result.fraction_at_least(0.75)),
        "frac90": format_number(result.fraction_at_least(0.9)),
        "bands": bands,
        "histogram": _histogram(table),
        "groups": [
            {
                "label": label,
                "figure": _box_figure(table, col, label),
                "table": _fractions(table, col),
            }
            for col, label in GROUPS
        ],  # fmt: skip
        "worst": dataframe_rows(worst[["icc", "icc_low", "icc_high", "n_cases"]]),
        "spread": spread_rows,
        "icc_form": prov.get("icc_form"),
        "settings": {
            "raters (rows per case)": ", ".join(prov.get("perturbations", [])),
            "reference segmentation (original)": prov.get("reference"),
            "mask sets": prov.get("mask_sets") or "none",
            "seed": prov.get("seed"),
            "parameters": prov.get("settings", {}).get("params_source"),
            "intensity": prov.get("settings", {}).get("intensity"),
            "regions": ", ".join(prov.get("settings", {}).get("regions", [])),
            "modalities": ", ".join(prov.get("settings", {}).get("modalities", [])),
            "settings hash": prov.get("settings_hash"),
            "task seconds": prov.get("task_seconds"),
        },
    }
    return render_report("robustness.html.j2", context, path)


def _range(low: float, high: float) -> str:
    if not np.isfinite(low):
        return f"< {high:g}"
    if not np.isfinite(high):
        return f">= {low:g}"
    return f"{low:g} - {high:g}"
