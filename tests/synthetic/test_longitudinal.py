"""`radsurv synth --timepoints 2`: a baseline and a follow-up per subject, with a documented
truth in which pseudoprogression and true progression evolve differently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from radsurv.cli.app import app
from radsurv.data.manifest import Manifest, build_manifest, write_manifest
from radsurv.data.synthetic import make_phantom
from radsurv.data.synthetic_longitudinal import sample_subject

SHAPE = (12, 32, 32)


def test_longitudinal_cohort_files_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    shape = [str(s) for s in SHAPE]
    result = CliRunner().invoke(
        app, ["synth", str(out), "-n", "3", "--timepoints", "2", "--shape", *shape]
    )
    assert result.exit_code == 0, result.output
    assert "3 subjects x 2 scans" in result.output
    ids = [f"BraTS20_Training_{v:03d}" for v in range(1, 7)]
    scans = pd.read_csv(out / "cohort.csv", dtype={"timepoint": float})
    assert list(scans["case_id"]) == ids
    assert list(scans["subject_id"]) == [f"subject_{i:03d}" for i in (1, 1, 2, 2, 3, 3)]
    assert list(scans["timepoint"][::2]) == [0, 0, 0]
    assert scans["timepoint"][1::2].between(60, 120).all()
    labels = pd.read_csv(out / "pseudoprogression.csv")
    assert list(labels.columns) == ["case_id", "subject_id", "label"]
    assert list(labels["case_id"]) == ids[1::2]  # the follow-up scans are judged
    assert set(labels["label"]) <= {"pseudoprogression", "progression"}
    survival = pd.read_csv(out / "survival_info.csv")
    assert list(survival["Brats20ID"]) == ids[::2]  # survival from the baseline scans
    truth = json.loads((out / "truth.json").read_text())
    assert truth["timepoints"] == 2 and truth["n_scans"] == 6
    # the manifest finds cohort.csv beside the data: subject_id and timepoint per scan
    manifest = tmp_path / "m.csv"
    write_manifest(build_manifest(out, relative_to=tmp_path, checksum=False), manifest)
    cohort = Manifest.read(manifest).cohort()
    assert list(cohort["subject_id"]) == list(scans["subject_id"])
    np.testing.assert_array_equal(cohort["timepoint"], scans["timepoint"])
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert list(table["label"][1::2]) == list(labels["label"]) and set(table["label"][::2]) == {""}


def test_progression_grows_necrosis_and_oedema_pseudoprogression_does_not() -> None:
    growth: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    for index in range(1, 60):
        base, follow, day, pseudo = sample_subject(index, seed=0)
        assert base.grade == follow.grade == "HGG" and 60 <= day <= 120
        core = follow.tumour_radius / base.tumour_radius
        necrotic = follow.necrosis_fraction * core / base.necrosis_fraction
        whole = follow.edema_scale * core / base.edema_scale
        growth[pseudo].append((core, necrotic, whole))
    psp, tp = np.array(growth[True]), np.array(growth[False])
    assert len(psp) > 15 and len(tp) > 15
    # the same new enhancement (core growth) in both classes ...
    assert psp[:, 0].min() >= 1.05 and tp[:, 0].min() >= 1.05
    assert abs(psp[:, 0].mean() - tp[:, 0].mean()) < 0.05
    # ... but only true progression grows necrosis and oedema
    np.testing.assert_allclose(psp[:, 1], 1.0)
    assert (tp[:, 1] > 1.04).all() and np.median(tp[:, 1]) > 1.15
    assert psp[:, 2].max() <= 1.05 + 1e-9  # the whole tumour keeps (about) its size
    assert tp[:, 2].min() >= 1.05 - 1e-9 and np.median(tp[:, 2]) > 1.15


def test_both_scans_of_a_subject_share_the_anatomy() -> None:
    base, follow, _, _ = sample_subject(2, seed=0)
    a = make_phantom(base, SHAPE, 0, case_id="x", noise_stream=20)
    b = make_phantom(follow, SHAPE, 0, case_id="y", noise_stream=21)
    assert (a.case_id, b.case_id) == ("x", "y")
    np.testing.assert_array_equal(a.images["t1"] > 0, b.images["t1"] > 0)  # same brain
    core_a = np.isin(a.labels, (1, 4)).sum()
    assert 0 < core_a < np.isin(b.labels, (1, 4)).sum()  # the core grows
    assert not np.array_equal(a.images["flair"], b.images["flair"])
