"""A synthetic longitudinal cohort: a baseline and a follow-up scan per subject.

``radsurv synth OUT --timepoints 2`` (:func:`synthesize_longitudinal_cohort`). Every subject is
a high-grade glioma after surgery: a post-operative baseline scan (``timepoint`` 0) and a
follow-up scan ``timepoint`` = 60-120 days later (after chemoradiation) on which new
enhancement appears. That follow-up is judged: pseudoprogression (treatment effect) or true
progression. Both scans of a subject share the anatomy and the tumour's shape fields (same
brain, same position, same irregular outline); each scan has its own scanner noise.

Generative truth (saved in ``truth.json``)
------------------------------------------
Baseline, per subject: tumour core radius ``r`` ~ U(0.09, 0.19) of the brain's half-width,
oedema extent ``e`` ~ U(1.3, 2.6) core radii, necrotic fraction ``n`` ~ U(0.15, 0.7) of the
core radius, texture amplitude ~ U(0.05, 0.4). These vary widely between subjects.

Label: pseudoprogression with probability 0.5, independent of everything at baseline.

Follow-up: in both classes the enhancing core grows by the same factor ``g`` ~ U(1.05, 1.25)
(new enhancement: the core radius becomes ``g r``), so enhancement alone does not tell them
apart. What differs is the rest of the tumour:

- true progression: necrosis and oedema grow with the core or faster (``n`` x U(1.0, 1.1),
  at most 0.8; ``e`` x U(1.0, 1.1)): necrosis, oedema and the whole tumour grow;
- pseudoprogression: the necrosis does not grow (its radius ``n r`` is kept) and the oedema
  hardly does (its outer radius ``e r`` x U(1.0, 1.05)): the new enhancement takes the place
  of oedema, the whole tumour keeps its size.

So at the follow-up alone the necrosis and oedema volumes mostly reflect each subject's
baseline, which varies far more between subjects than the classes differ; their change from
baseline (delta-radiomics) carries the signal. (On the label masks of 40 subjects at
24x48x48, a cross-validated logistic regression on the five follow-up volumes reaches an AUC
of about 0.74, on their deltas about 0.99.) Survival rows (``survival_info.csv``) are given
for the baseline scans, from the Weibull model of :mod:`radsurv.data.synthetic`.

Files: ``data/`` (Kaggle layout; volume ``2i - 1`` is subject ``i``'s baseline, ``2i`` its
follow-up), ``cohort.csv`` (``case_id,subject_id,timepoint`` per scan; ``radsurv manifest``
reads it), ``pseudoprogression.csv`` (``case_id`` = the follow-up scan judged, ``subject_id``,
``label``), ``survival_info.csv``, ``name_mapping.csv`` (grade per scan),
``phantom_properties.csv`` (per scan: latent parameters, volumes, label) and ``truth.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from radsurv.data.hdf5 import DEFAULT_CHANNEL_ORDER, meta_data_rows, write_kaggle_volume
from radsurv.data.labels import LABEL_ED, LABEL_ET, LABEL_NCR

logger = logging.getLogger(__name__)

PSEUDOPROGRESSION_RATE = 0.5
FOLLOW_UP_DAYS = (60, 120)
BASELINE_RANGES: dict[str, tuple[float, float]] = {
    "tumour_radius": (0.09, 0.19),
    "edema_scale": (1.3, 2.6),
    "necrosis_fraction": (0.15, 0.7),
    "heterogeneity": (0.05, 0.4),
}
#: Growth from baseline to follow-up: radius factors, U(low, high).
GROWTH: dict[str, dict[str, tuple[float, float]]] = {
    "both": {"core_radius": (1.05, 1.25)},
    "progression": {"necrosis_fraction": (1.0, 1.1), "edema_scale": (1.0, 1.1)},
    "pseudoprogression": {"necrotic_radius": (1.0, 1.0), "edema_radius": (1.0, 1.05)},
}
MAX_NECROSIS_FRACTION = 0.8
MIN_EDEMA_SCALE = 1.05


def subject_id(index: int) -> str:
    """Subject id of subject ``index`` (1-based) of a synthetic longitudinal cohort."""
    return f"subject_{index:03d}"


def sample_subject(index: int, seed: int):
    """Baseline and follow-up parameters, follow-up day and label of subject ``index``."""
    from radsurv.data.synthetic import PatientParams, _rng

    rng = _rng(seed, index, 7)
    ranges = BASELINE_RANGES
    base = PatientParams(
        index=index,
        grade="HGG",
        age=round(float(np.clip(rng.normal(58.0, 11.0), 19.0, 86.0)), 3),
        resection=str(rng.choice(["GTR", "STR", "NA"], p=[0.5, 0.08, 0.42])),
        tumour_radius=float(rng.uniform(*ranges["tumour_radius"])),
        edema_scale=float(rng.uniform(*ranges["edema_scale"])),
        necrosis_fraction=float(rng.uniform(*ranges["necrosis_fraction"])),
        heterogeneity=float(rng.uniform(*ranges["heterogeneity"])),
        centre=tuple(float(c) for c in rng.uniform(-0.3, 0.3, size=3)),  # type: ignore[arg-type]
    )
    pseudo = bool(rng.random() < PSEUDOPROGRESSION_RATE)
    core = float(rng.uniform(*GROWTH["both"]["core_radius"]))
    if pseudo:
        g = GROWTH["pseudoprogression"]
        necrosis = base.necrosis_fraction * float(rng.uniform(*g["necrotic_radius"])) / core
        edema = base.edema_scale * float(rng.uniform(*g["edema_radius"])) / core
    else:
        g = GROWTH["progression"]
        necrosis = base.necrosis_fraction * float(rng.uniform(*g["necrosis_fraction"]))
        edema = base.edema_scale * float(rng.uniform(*g["edema_scale"]))
    follow = replace(
        base,
        tumour_radius=base.tumour_radius * core,
        necrosis_fraction=min(necrosis, MAX_NECROSIS_FRACTION),
        edema_scale=max(edema, MIN_EDEMA_SCALE),
    )
    day = int(rng.integers(FOLLOW_UP_DAYS[0], FOLLOW_UP_DAYS[1] + 1))
    return base, follow, day, pseudo


def synthesize_longitudinal_cohort(out: Path, n_subjects: int, seed: int, shape):
    """Write the longitudinal cohort (see the module docstring); returns a SyntheticCohort."""
    from radsurv.data.synthetic import SyntheticCohort, _outcomes, case_id_for_volume, make_phantom

    out = Path(out)
    cohort = SyntheticCohort.at(out)
    rows, meta_rows = [], []
    for index in range(1, n_subjects + 1):
        base, follow, day, pseudo = sample_subject(index, seed)
        for k, (params, t) in enumerate(((base, 0), (follow, day))):
            volume = 2 * (index - 1) + k + 1
            case = make_phantom(
                params,
                shape=shape,
                seed=seed,
                case_id=case_id_for_volume(volume),
                noise_stream=20 + k,
            )
            write_kaggle_volume(case, cohort.data_dir, volume, channel_order=DEFAULT_CHANNEL_ORDER)
            meta_rows += meta_data_rows(case, volume)
            counts = {
                lab: int((case.labels == lab).sum()) for lab in (LABEL_NCR, LABEL_ED, LABEL_ET)
            }
            rows.append(
                {
                    "case_id": case.case_id,
                    "subject_id": subject_id(index),
                    "timepoint": t,
                    "scan": "baseline" if k == 0 else "follow-up",
                    **{k2: v for k2, v in asdict(params).items() if k2 not in ("index", "centre")},
                    "ncr_volume": counts[LABEL_NCR],
                    "ed_volume": counts[LABEL_ED],
                    "et_volume": counts[LABEL_ET],
                    "tc_volume": counts[LABEL_NCR] + counts[LABEL_ET],
                    "wt_volume": sum(counts.values()),
                    "pseudoprogression": pseudo,
                }
            )
    pd.DataFrame(meta_rows).to_csv(cohort.data_dir / "meta_data.csv", index=False)
    scans = pd.DataFrame(rows)
    scans.to_csv(out / "phantom_properties.csv", index=False)
    scans[["case_id", "subject_id", "timepoint"]].to_csv(out / "cohort.csv", index=False)
    follow_ups = scans[scans["scan"] == "follow-up"]
    labels = pd.DataFrame(
        {
            "case_id": follow_ups["case_id"],
            "subject_id": follow_ups["subject_id"],
            "label": np.where(follow_ups["pseudoprogression"], "pseudoprogression", "progression"),
        }
    )
    labels.to_csv(cohort.labels_csv, index=False)
    baselines = scans[scans["scan"] == "baseline"].reset_index(drop=True)
    outcomes = _outcomes(baselines.drop(columns=["pseudoprogression"]), seed)
    survival_days = [
        str(t) if e else f"ALIVE ({t} days later)"
        for t, e in zip(outcomes["time"], outcomes["event"], strict=True)
    ]
    pd.DataFrame(
        {
            "Brats20ID": outcomes["case_id"],
            "Age": outcomes["age"].round(3),
            "Survival_days": survival_days,
            "Extent_of_Resection": outcomes["resection"],
        }
    ).to_csv(cohort.survival_csv, index=False, lineterminator="\r\n")
    pd.DataFrame(
        {
            "Grade": scans["grade"],
            "BraTS_2017_subject_ID": "NA",
            "BraTS_2018_subject_ID": "NA",
            "TCGA_TCIA_subject_ID": "NA",
            "BraTS_2019_subject_ID": "NA",
            "BraTS_2020_subject_ID": scans["case_id"],
        }
    ).to_csv(cohort.name_mapping_csv, index=False)
    positives = int(labels["label"].eq("pseudoprogression").sum())
    truth = {
        "seed": seed,
        "n_subjects": n_subjects,
        "timepoints": 2,
        "n_scans": len(scans),
        "shape_zyx": list(shape),
        "spacing_mm": [1.0, 1.0, 1.0],
        "channel_order": list(DEFAULT_CHANNEL_ORDER),
        "longitudinal_model": {
            "form": "see radsurv.data.synthetic_longitudinal docstring",
            "pseudoprogression_rate": PSEUDOPROGRESSION_RATE,
            "baseline_uniform_ranges": {k: list(v) for k, v in BASELINE_RANGES.items()},
            "growth_uniform_factors": {
                k: {kk: list(vv) for kk, vv in v.items()} for k, v in GROWTH.items()
            },
            "follow_up_days_uniform": list(FOLLOW_UP_DAYS),
        },
        "survival_model": "Weibull as radsurv.data.synthetic, for the baseline scans",
        "pseudoprogression_positives": positives,
        "events": int(outcomes["event"].sum()),
    }
    cohort.truth_json.write_text(json.dumps(truth, indent=2))
    logger.info(
        "synthesized %d subjects x 2 scans (%d pseudoprogression) under %s",
        n_subjects,
        positives,
        out,
    )
    return cohort
