"""The report section of site-wise validation: metric by site, models against baselines, and
the site effect of the features before/after harmonisation (both endpoints)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from radsurv.evaluation.report import figure_to_data_uri, format_number, new_figure


def _figure(
    groups: Mapping[str, Any],
    pooled: Mapping[str, Any],
    metric: str,
    roles: Mapping[str, str] | None = None,
) -> str:
    sites = [*groups.keys(), "pooled"]
    models = list(pooled.keys())
    roles = roles or {}
    fig, ax = new_figure((max(5.0, 0.9 * len(sites) + 2), 4.0))
    width = 0.8 / max(len(models), 1)
    for j, model in enumerate(models):
        xs, ms, lo, hi = [], [], [], []
        for i, site in enumerate(sites):
            block = pooled if site == "pooled" else groups[site]
            s = block.get(model, {}).get(metric, {})
            m = s.get("mean", math.nan)
            ci = s.get("ci95", [math.nan, math.nan])
            xs.append(i + (j - (len(models) - 1) / 2) * width)
            ms.append(m)
            lo.append(m - ci[0] if np.isfinite(ci[0]) else 0.0)
            hi.append(ci[1] - m if np.isfinite(ci[1]) else 0.0)
        baseline = roles.get(model) == "baseline"
        ax.errorbar(
            xs,
            ms,
            yerr=[lo, hi],
            fmt="s" if baseline else "o",
            mfc="white" if baseline else None,
            capsize=3,
            label=f"{model} (baseline)" if baseline else model,
        )
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(sites)))
    ax.set_xticklabels(sites, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by held-out site (95% bootstrap CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_to_data_uri(fig)


def site_context(extra: Mapping[str, Any] | None, metric: str) -> dict[str, Any]:
    """Template variables ``sites`` and ``harmonisation`` from the metrics.json keys."""
    extra = extra or {}
    groups, pooled = extra.get("groups") or {}, extra.get("pooled") or {}
    out: dict[str, Any] = {"sites": None, "harmonisation": None}
    if groups:
        models = list(pooled.keys())
        rows = []
        for site, block in [*groups.items(), ("pooled", pooled)]:
            first = next(iter(block.values()), {})
            cells = []
            for model in models:
                s = block.get(model, {}).get(metric, {})
                ci = s.get("ci95", [math.nan, math.nan])
                cells.append(
                    f"{format_number(s.get('mean'))} [{format_number(ci[0])}, "
                    f"{format_number(ci[1])}]"
                )
            rows.append({"site": site, "n": first.get("n"), "events": first.get("events"),
                         "cells": cells})  # fmt: skip
        out["sites"] = {
            "metric": metric,
            "models": models,
            "rows": rows,
            "plan": (extra.get("cv") or {}).get("description", ""),
            "figure": _figure(groups, pooled, metric, extra.get("group_roles")),
        }
    harm = extra.get("harmonisation")
    if harm:
        out["harmonisation"] = {
            "method": harm.get("method"),
            "covariates": ", ".join(harm.get("covariates") or []) or "none",
            "unseen": harm.get("unseen_site_rule"),
            "in_fold": ", ".join(
                format_number(v, 2)
                for v in (harm.get("after") or {}).get("fraction_p_lt_0.05_in_fold", [])
            ),
            "rows": [
                {
                    "when": when,
                    "tested": harm[when]["n_tested"],
                    "p": format_number(harm[when]["fraction_p_lt_0.05"]),
                    "q": format_number(harm[when]["fraction_q_lt_0.05_bh"]),
                    "median_p": format_number(harm[when]["median_p"], 4),
                }
                for when in ("before", "after")
                if when in harm
            ],
        }
    return out
