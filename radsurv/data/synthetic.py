"""A synthetic BraTS-like cohort: phantom MRI, expert-style labels and clinical tables.

It is the embedded default that the demo, the notebooks and many tests run on. Everything is
deterministic given the seed.

Phantoms
--------
A head-shaped ellipsoid of textured brain (grey/white matter from a smooth random field,
ventricles), a bias field and per-modality noise. The tumour is an irregular blob: an oedema halo
(label 2, bright on FLAIR and T2), a tumour core whose outer shell enhances (label 4, bright on
T1Gd) around a necrotic centre (label 1, dark on T1/T1Gd, bright on T2). LGG-like cases have no
enhancing tumour: their core is non-enhancing (label 1). Inside the tumour a smooth multiplicative
texture of amplitude ``heterogeneity`` makes texture features meaningful.

Generative model of the outcomes (the truth, saved as ``truth.json`` beside the cohort)
--------------------------------------------------------------------------------------
With ``z(.)`` the cohort z-score and volumes measured from the generated label masks,

    lp = b_age * (age - 60) / 10 + b_str * [resection == STR] + b_lgg * [grade == LGG]
         + b_ncr * z(log1p NCR volume) + b_et * z(log1p ET volume) + b_het * z(heterogeneity)

Survival time in days is Weibull with proportional hazards: ``T = (-log U / (lam * exp(lp)))
** (1 / k)``, censored by an independent uniform follow-up time; censored rows are written as
``ALIVE (N days later)`` like the real BraTS 2020 table, and unknown resections as ``NA``.
Pseudoprogression (vs true progression) is Bernoulli with

    logit p = a0 + a_het * z(heterogeneity) + a_etfrac * z(ET volume / TC volume)
              + a_age * (age - 60) / 10

so both endpoints carry image signal beyond age.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from radsurv.data.case import Case
from radsurv.data.hdf5 import (
    DEFAULT_CHANNEL_ORDER,
    case_id_for_volume,
    meta_data_rows,
    write_kaggle_volume,
)
from radsurv.data.labels import LABEL_ED, LABEL_ET, LABEL_NCR, MODALITIES

logger = logging.getLogger(__name__)

DEFAULT_CASES = 48
DEFAULT_SHAPE: tuple[int, int, int] = (40, 96, 96)  # (z, y, x), 1 mm voxels
DEFAULT_SEED = 0

SURVIVAL_COEFFICIENTS: dict[str, float] = {
    "age_per_decade": 0.45,
    "resection_STR": 0.5,
    "grade_LGG": -1.0,
    "z_log_ncr_volume": 0.55,
    "z_log_et_volume": 0.35,
    "z_heterogeneity": 0.5,
}
WEIBULL_SHAPE = 1.5
WEIBULL_MEDIAN_DAYS = 420.0  # median survival at lp = 0
FOLLOW_UP_DAYS = (250.0, 1600.0)  # uniform censoring window

PSEUDOPROGRESSION_COEFFICIENTS: dict[str, float] = {
    "intercept": -0.6,
    "z_heterogeneity": -1.6,
    "z_et_fraction": 1.0,
    "age_per_decade": -0.2,
}

# Tissue intensities per modality (arbitrary MR units): brain, csf, ED, ET, NCR
_TISSUE = {
    "flair": {"brain": 300.0, "csf": 90.0, "ED": 560.0, "ET": 470.0, "NCR": 380.0},
    "t1": {"brain": 420.0, "csf": 160.0, "ED": 330.0, "ET": 360.0, "NCR": 200.0},
    "t1gd": {"brain": 430.0, "csf": 170.0, "ED": 350.0, "ET": 980.0, "NCR": 210.0},
    "t2": {"brain": 260.0, "csf": 620.0, "ED": 520.0, "ET": 400.0, "NCR": 600.0},
}
_GREY_WHITE_CONTRAST = {"flair": 0.12, "t1": -0.15, "t1gd": -0.12, "t2": 0.15}
_NOISE_SD = {"flair": 0.04, "t1": 0.035, "t1gd": 0.04, "t2": 0.045}


@dataclass(frozen=True)
class PatientParams:
    """Sampled clinical and tumour parameters of one synthetic patient."""

    index: int
    grade: str
    age: float
    resection: str  # "GTR", "STR" or "NA"
    tumour_radius: float  # fraction of the brain's half-width
    edema_scale: float  # oedema extent relative to the core radius
    necrosis_fraction: float  # necrotic radius relative to the core radius
    heterogeneity: float  # amplitude of the multiplicative tumour texture
    centre: tuple[float, float, float]  # (z, y, x) in [-1, 1] brain coordinates


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    # one independent stream per (seed, case, purpose) so cases do not depend on each other
    return np.random.default_rng([seed, index, stream])


def sample_patient(index: int, seed: int = DEFAULT_SEED) -> PatientParams:
    """Sample the parameters of patient ``index`` (1-based) of the cohort with ``seed``."""
    rng = _rng(seed, index, 0)
    grade = "LGG" if rng.random() < 0.2 else "HGG"
    age = float(np.clip(rng.normal(61.0 if grade == "HGG" else 45.0, 11.0), 19.0, 86.0))
    resection = str(rng.choice(["GTR", "STR", "NA"], p=[0.5, 0.08, 0.42]))
    heterogeneity = float(rng.uniform(0.05, 0.45) if grade == "HGG" else rng.uniform(0.03, 0.2))
    return PatientParams(
        index=index,
        grade=grade,
        age=round(age, 3),
        resection=resection,
        tumour_radius=float(rng.uniform(0.14, 0.30)),
        edema_scale=float(rng.uniform(1.25, 1.8)),
        necrosis_fraction=float(rng.uniform(0.15, 0.75) if grade == "HGG" else 0.0),
        heterogeneity=heterogeneity,
        centre=tuple(float(c) for c in rng.uniform(-0.35, 0.35, size=3)),  # type: ignore[arg-type]
    )


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean and unit sd."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="reflect")
    return (field - field.mean()) / (field.std() + 1e-12)


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised coordinates in [-1, 1] along (z, y, x)."""
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    return np.meshgrid(*axes, indexing="ij")  # type: ignore[return-value]


def make_phantom(
    params: PatientParams,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    seed: int = DEFAULT_SEED,
    *,
    case_id: str | None = None,
    noise_stream: int | None = None,
) -> Case:
    """Render one patient's four modalities and canonical label mask at 1 mm voxels.

    The anatomy and the tumour's shape fields depend on ``(seed, params.index)`` only, so two
    scans of one patient (the same index, other tumour parameters) share them. ``case_id``
    overrides the id (default: from the index); ``noise_stream`` draws the scanner noise from
    its own random stream (default: the anatomy's stream, as single-scan cohorts do).

    Examples
    --------
    >>> case = make_phantom(sample_patient(1), shape=(16, 48, 48))
    >>> case.shape, sorted(case.images)
    ((16, 48, 48), ['flair', 't1', 't1gd', 't2'])
    """
    rng = _rng(seed, params.index, 1)
    zz, yy, xx = _grid(shape)
    # head: an ellipsoid a little smaller than the field of view; brain inside the skull
    head = (zz / 0.92) ** 2 + (yy / 0.88) ** 2 + (xx / 0.8) ** 2
    brain = head < 0.85**2
    ventricles = ((zz / 0.3) ** 2 + (yy / 0.22) ** 2 + ((np.abs(xx) - 0.12) / 0.08) ** 2) < 1.0

    smooth_sigma = max(1.0, min(shape) / 16)
    grey_white = _smooth_field(rng, shape, smooth_sigma) > 0.3
    # tumour: distance to the centre, scaled per axis to the brain, perturbed by a smooth field
    cz, cy, cx = params.centre
    dist = np.sqrt(
        ((zz - cz * 0.6) / 0.8) ** 2 + ((yy - cy * 0.6) / 0.78) ** 2 + (xx - cx * 0.6) ** 2
    )
    wobble = 0.22 * _smooth_field(rng, shape, smooth_sigma * 1.5)
    rel = dist / params.tumour_radius + wobble
    core = (rel < 1.0) & brain
    whole = (dist / (params.tumour_radius * params.edema_scale) + wobble < 1.0) & brain
    labels = np.zeros(shape, dtype=np.uint8)
    labels[whole] = LABEL_ED
    if params.grade == "HGG":
        necrotic = core & (rel < params.necrosis_fraction)
        labels[core] = LABEL_ET
        labels[necrotic] = LABEL_NCR
    else:
        labels[core] = LABEL_NCR  # non-enhancing core
    ventricles &= brain & (labels == 0)

    texture = _smooth_field(rng, shape, max(0.7, smooth_sigma / 3))
    bias = 1.0 + 0.08 * _smooth_field(rng, shape, smooth_sigma * 4)
    noise_rng = rng if noise_stream is None else _rng(seed, params.index, noise_stream)
    images: dict[str, np.ndarray] = {}
    for modality in MODALITIES:
        tissue = _TISSUE[modality]
        contrast = _GREY_WHITE_CONTRAST[modality]
        img = np.zeros(shape, dtype=np.float32)
        img[brain] = tissue["brain"] * (1.0 + np.where(grey_white[brain], contrast, -contrast))
        img[ventricles] = tissue["csf"]
        for region, label in (("ED", LABEL_ED), ("ET", LABEL_ET), ("NCR", LABEL_NCR)):
            sel = labels == label
            img[sel] = tissue[region] * (1.0 + params.heterogeneity * texture[sel])
        noise = noise_rng.normal(0.0, _NOISE_SD[modality], size=shape).astype(np.float32)
        img = img * bias * (1.0 + noise)
        img[~brain] = 0.0  # skull-stripped like BraTS
        images[modality] = np.clip(img, 0.0, None).astype(np.float32)
    return Case(
        case_id=case_id or case_id_for_volume(params.index),
        images=images,
        labels=labels,
        spacing=(1.0, 1.0, 1.0),
        provenance={"format": "synthetic", "params": asdict(params), "seed": seed},
    )


def make_phantom_case(
    index: int, seed: int = DEFAULT_SEED, shape: tuple[int, int, int] = DEFAULT_SHAPE
) -> Case:
    """Phantom of patient ``index`` (1-based) of the cohort with ``seed``, without writing files."""
    return make_phantom(sample_patient(index, seed), shape=shape, seed=seed)


@dataclass(frozen=True)
class SyntheticCohort:
    """Paths of a synthesized cohort."""

    root: Path
    data_dir: Path
    survival_csv: Path
    name_mapping_csv: Path
    labels_csv: Path
    truth_json: Path

    @classmethod
    def at(cls, root: Path) -> SyntheticCohort:
        """The file layout of a cohort written under ``root`` (its data folder created)."""
        root = Path(root)
        cohort = cls(
            root=root,
            data_dir=root / "data",
            survival_csv=root / "survival_info.csv",
            name_mapping_csv=root / "name_mapping.csv",
            labels_csv=root / "pseudoprogression.csv",
            truth_json=root / "truth.json",
        )
        cohort.data_dir.mkdir(parents=True, exist_ok=True)
        return cohort


def _zscore(values: np.ndarray) -> np.ndarray:
    sd = values.std()
    return (values - values.mean()) / (sd if sd > 0 else 1.0)


def _outcomes(patients: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Survival times, censoring and pseudoprogression labels from the generative model."""
    rng = np.random.default_rng([seed, 10_000])
    b = SURVIVAL_COEFFICIENTS
    lp = (
        b["age_per_decade"] * (patients["age"] - 60.0) / 10.0
        + b["resection_STR"] * (patients["resection"] == "STR")
        + b["grade_LGG"] * (patients["grade"] == "LGG")
        + b["z_log_ncr_volume"] * _zscore(np.log1p(patients["ncr_volume"].to_numpy()))
        + b["z_log_et_volume"] * _zscore(np.log1p(patients["et_volume"].to_numpy()))
        + b["z_heterogeneity"] * _zscore(patients["heterogeneity"].to_numpy())
    ).to_numpy(dtype=float)
    lam = math.log(2.0) / WEIBULL_MEDIAN_DAYS**WEIBULL_SHAPE
    u = rng.uniform(size=len(patients))
    event_time = (-np.log(u) / (lam * np.exp(lp))) ** (1.0 / WEIBULL_SHAPE)
    follow_up = rng.uniform(*FOLLOW_UP_DAYS, size=len(patients))
    a = PSEUDOPROGRESSION_COEFFICIENTS
    et_fraction = patients["et_volume"] / patients["tc_volume"].clip(lower=1)
    logit = (
        a["intercept"]
        + a["z_heterogeneity"] * _zscore(patients["heterogeneity"].to_numpy())
        + a["z_et_fraction"] * _zscore(et_fraction.to_numpy(dtype=float))
        + a["age_per_decade"] * (patients["age"].to_numpy() - 60.0) / 10.0
    )
    psp = rng.uniform(size=len(patients)) < 1.0 / (1.0 + np.exp(-logit))
    out = patients.copy()
    out["linear_predictor"] = lp
    out["time"] = np.maximum(1, np.round(np.minimum(event_time, follow_up))).astype(int)
    out["event"] = event_time <= follow_up
    out["pseudoprogression"] = psp
    return out


def _write_clinical_tables(outcomes: pd.DataFrame, cohort: SyntheticCohort) -> None:
    """Write the tables in the real files' shapes and quirks (CRLF, ALIVE rows, literal NA)."""
    survival_days = [
        str(t) if e else f"ALIVE ({t} days later)"
        for t, e in zip(outcomes["time"], outcomes["event"], strict=True)
    ]
    survival = pd.DataFrame(
        {
            "Brats20ID": outcomes["case_id"],
            "Age": outcomes["age"].round(3),
            "Survival_days": survival_days,
            "Extent_of_Resection": outcomes["resection"],
        }
    )
    survival.to_csv(cohort.survival_csv, index=False, lineterminator="\r\n")
    mapping = pd.DataFrame(
        {
            "Grade": outcomes["grade"],
            "BraTS_2017_subject_ID": "NA",
            "BraTS_2018_subject_ID": "NA",
            "TCGA_TCIA_subject_ID": "NA",
            "BraTS_2019_subject_ID": "NA",
            "BraTS_2020_subject_ID": outcomes["case_id"],
        }
    )
    mapping.to_csv(cohort.name_mapping_csv, index=False)
    labels = pd.DataFrame(
        {
            "case_id": outcomes["case_id"],
            "label": np.where(outcomes["pseudoprogression"], "pseudoprogression", "progression"),
        }
    )
    labels.to_csv(cohort.labels_csv, index=False)


def synthesize_cohort(
    out: Path,
    n_cases: int = DEFAULT_CASES,
    seed: int = DEFAULT_SEED,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    timepoints: int = 1,
) -> SyntheticCohort:
    """Write a synthetic cohort in exactly the Kaggle HDF5 layout plus its clinical tables.

    ``timepoints=2`` writes a longitudinal cohort instead: ``n_cases`` subjects with a
    baseline and a follow-up scan each, in which pseudoprogression and true progression evolve
    differently (:mod:`radsurv.data.synthetic_longitudinal`, which documents its truth).

    Writes ``out/data/volume_{V}_slice_{S}.h5`` and ``out/data/meta_data.csv``,
    ``out/survival_info.csv``, ``out/name_mapping.csv``, ``out/pseudoprogression.csv``,
    ``out/truth.json`` (the generative model and its parameters) and
    ``out/phantom_properties.csv`` (per-case latent image properties).

    Examples
    --------
    >>> cohort = synthesize_cohort(Path("cohort"), n_cases=4)  # doctest: +SKIP
    """
    if n_cases < 1:
        raise ValueError("n_cases must be >= 1")
    if timepoints not in (1, 2):
        raise ValueError(f"timepoints must be 1 or 2, got {timepoints}")
    if timepoints == 2:
        from radsurv.data.synthetic_longitudinal import synthesize_longitudinal_cohort

        return synthesize_longitudinal_cohort(Path(out), n_cases, seed, shape)
    out = Path(out)
    cohort = SyntheticCohort.at(out)
    rows, meta_rows = [], []
    for index in range(1, n_cases + 1):
        params = sample_patient(index, seed)
        case = make_phantom(params, shape=shape, seed=seed)
        write_kaggle_volume(case, cohort.data_dir, index, channel_order=DEFAULT_CHANNEL_ORDER)
        meta_rows += meta_data_rows(case, index)
        counts = {lab: int((case.labels == lab).sum()) for lab in (LABEL_NCR, LABEL_ED, LABEL_ET)}
        rows.append(
            {
                "case_id": case.case_id,
                **{k: v for k, v in asdict(params).items() if k not in ("index", "centre")},
                "ncr_volume": counts[LABEL_NCR],
                "ed_volume": counts[LABEL_ED],
                "et_volume": counts[LABEL_ET],
                "tc_volume": counts[LABEL_NCR] + counts[LABEL_ET],
                "wt_volume": sum(counts.values()),
            }
        )
        logger.debug("synthesized %s", case.case_id)
    pd.DataFrame(meta_rows).to_csv(cohort.data_dir / "meta_data.csv", index=False)
    outcomes = _outcomes(pd.DataFrame(rows), seed)
    outcomes.to_csv(out / "phantom_properties.csv", index=False)
    _write_clinical_tables(outcomes, cohort)
    truth = {
        "seed": seed,
        "n_cases": n_cases,
        "shape_zyx": list(shape),
        "spacing_mm": [1.0, 1.0, 1.0],
        "channel_order": list(DEFAULT_CHANNEL_ORDER),
        "survival_model": {
            "form": "Weibull proportional hazards; lp as in radsurv.data.synthetic docstring",
            "coefficients": SURVIVAL_COEFFICIENTS,
            "weibull_shape": WEIBULL_SHAPE,
            "median_days_at_lp0": WEIBULL_MEDIAN_DAYS,
            "follow_up_days_uniform": list(FOLLOW_UP_DAYS),
        },
        "pseudoprogression_model": {
            "form": "logistic; logit as in radsurv.data.synthetic docstring",
            "coefficients": PSEUDOPROGRESSION_COEFFICIENTS,
        },
        "events": int(outcomes["event"].sum()),
        "pseudoprogression_positives": int(outcomes["pseudoprogression"].sum()),
    }
    cohort.truth_json.write_text(json.dumps(truth, indent=2))
    logger.info(
        "synthesized %d cases (%d events, %d pseudoprogression) under %s",
        n_cases,
        truth["events"],
        truth["pseudoprogression_positives"],
        out,
    )
    return cohort
