"""Batch runs: fixed columns, empty regions, bad cases, resume, settings hash, process pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radsurv.data.case import Case
from radsurv.errors import FeatureExtractionError
from radsurv.features.extract import ExtractionConfig, feature_columns
from radsurv.features.runner import extract_features
from radsurv.features.store import parts_dir


def test_every_case_has_every_column_empty_regions_nan(
    phantoms: list[Case], fast_params: Path
) -> None:
    res = extract_features(phantoms, params=str(fast_params), jobs=1)
    config = ExtractionConfig.create(str(fast_params), modalities=phantoms[0].modalities)
    assert list(res.features.columns) == ["case_id", *feature_columns(config)]
    assert res.status["status"].tolist() == ["ok"] * 4
    feats = res.features.set_index("case_id")
    notes = res.status.set_index("case_id")["notes"]
    et = [c for c in feats.columns if c.startswith("ET_") or "_ET_" in c]
    assert feats.loc["BraTS20_Training_002", et].isna().all()  # LGG-like: no ET
    assert "ET: empty region" in notes["BraTS20_Training_002"]
    ncr = [c for c in feats.columns if c.startswith("NCR_") or "_NCR_" in c]
    assert feats.loc["BraTS20_Training_003", ncr].isna().all()  # 4 voxels < minimumROISize 10
    assert "NCR:" in notes["BraTS20_Training_003"] and "too small" in notes["BraTS20_Training_003"]
    assert feats.loc["BraTS20_Training_001", et].notna().all()
    assert feats.loc["BraTS20_Training_004"].notna().all()
    assert not any(c.startswith(("diagnostics", "t1_diagnostics")) for c in feats.columns)
    # shape once per region, texture per modality x region
    assert "WT_original_shape_MeshVolume" in feats.columns
    assert "t1gd_ET_original_glcm_Contrast" in feats.columns


def test_bad_cases_are_recorded_and_the_run_goes_on(
    phantoms: list[Case], fast_params: Path
) -> None:
    good, nan_case, short = phantoms[0], phantoms[1], phantoms[3]
    images = dict(nan_case.images)
    images["t2"] = images["t2"].copy()
    images["t2"][3, 4, 5] = np.nan
    nan_case = Case(nan_case.case_id, images, nan_case.labels)
    masks = {short.case_id: short.labels[:, :, :-1]}
    res = extract_features(
        [good, nan_case, short], params=str(fast_params), regions=["WT"], masks=masks, jobs=1
    )
    status = res.status.set_index("case_id")
    assert status.loc[good.case_id, "status"] == "ok"
    assert res.failed == [nan_case.case_id, short.case_id]
    assert "NaN" in status.loc[nan_case.case_id, "error"]
    assert nan_case.case_id in status.loc[nan_case.case_id, "error"]
    err = status.loc[short.case_id, "error"]
    assert "(24, 48, 47)" in err and "(24, 48, 48)" in err and short.case_id in err
    assert res.features["case_id"].tolist() == [good.case_id]
    with pytest.raises(FeatureExtractionError, match="--strict"):
        extract_features(
            [nan_case, good], params=str(fast_params), regions=["WT"], jobs=1, strict=True
        )


def test_resume_gives_identical_table_and_settings_never_mix(
    tmp_path: Path, phantoms: list[Case], fast_params: Path
) -> None:
    cases = phantoms[:3]
    kw = {"params": str(fast_params), "regions": ["ET", "WT"], "jobs": 1}
    ref = extract_features(cases, output=tmp_path / "ref.csv", **kw)
    out = tmp_path / "run.csv"
    first = extract_features(cases, output=out, **kw)
    parts = sorted(parts_dir(out).glob("*.json"))
    assert len(parts) == 3 and first.provenance["settings_hash"] in parts[0].name
    parts[1].unlink()  # as if the run had died before this case
    again = extract_features(cases, output=out, **kw)
    assert again.status["resumed"].tolist() == [True, False, True]
    assert out.read_bytes() == (tmp_path / "ref.csv").read_bytes()
    pd.testing.assert_frame_equal(again.features, ref.features)

    other = extract_features(cases, output=out, **{**kw, "regions": ["WT"]})
    assert not other.status["resumed"].any()  # new settings hash: nothing reused
    assert other.provenance["settings_hash"] != first.provenance["settings_hash"]
    assert not any("_ET_" in c for c in other.features.columns)
    assert len(list(parts_dir(out).glob("*.json"))) == 6
    forced = extract_features(cases, output=out, force=True, **{**kw, "regions": ["WT"]})
    assert not forced.status["resumed"].any()
    pd.testing.assert_frame_equal(forced.features, other.features)


def test_resume_recomputes_cases_whose_mask_changed(
    tmp_path: Path, phantoms: list[Case], fast_params: Path
) -> None:
    """Re-segmented masks never leave stale rows: a changed mask file means recompute."""
    import SimpleITK as sitk

    cases = phantoms[:3]
    masks = tmp_path / "masks"
    masks.mkdir()
    for case in cases:
        sitk.WriteImage(case.labels_sitk(), str(masks / f"{case.case_id}.nii.gz"))
    kw = {"params": str(fast_params), "regions": ["WT"], "jobs": 1, "masks": masks}
    out = tmp_path / "run.csv"
    first = extract_features(cases, output=out, **kw)
    changed = cases[1]
    smaller = np.where(changed.labels == 2, 0, changed.labels).astype(np.uint8)  # oedema gone
    sitk.WriteImage(changed.to_sitk(smaller), str(masks / f"{changed.case_id}.nii.gz"))
    again = extract_features(cases, output=out, **kw)
    assert again.status["resumed"].tolist() == [True, False, True]
    volume = "WT_original_shape_VoxelVolume"
    before = first.features.set_index("case_id")[volume]
    after = again.features.set_index("case_id")[volume]
    assert after[changed.case_id] < before[changed.case_id]
    assert after.drop(changed.case_id).equals(before.drop(changed.case_id))


def test_status_provenance_and_parquet(
    tmp_path: Path, phantoms: list[Case], fast_params: Path
) -> None:
    res = extract_features(
        phantoms[:2], params=str(fast_params), regions=["TC"], jobs=1, output=tmp_path / "f.parquet"
    )
    back = pd.read_parquet(tmp_path / "f.parquet")
    pd.testing.assert_frame_equal(back, res.features)
    status = pd.read_csv(tmp_path / "f.status.csv")
    assert list(status.columns) == ["case_id", "status", "seconds", "error", "notes", "resumed"]
    import json

    prov = json.loads((tmp_path / "f.provenance.json").read_text())
    assert {"pyradiomics", "numpy", "SimpleITK"} <= set(prov["versions"])
    assert prov["settings"]["pyradiomics_params"]["featureClass"].keys() >= {"glcm"}
    assert prov["settings_hash"] == res.provenance["settings_hash"]


@pytest.mark.slow
def test_process_pool_equals_single_process(phantoms: list[Case], fast_params: Path) -> None:
    kw = {"params": str(fast_params), "regions": ["NCR", "ED", "WT"]}
    one = extract_features(phantoms, jobs=1, **kw)
    two = extract_features(phantoms, jobs=2, **kw)
    pd.testing.assert_frame_equal(one.features, two.features)
    assert two.status["status"].tolist() == ["ok"] * 4


def test_progress_events_and_ctrl_c_saves_finished_cases(
    tmp_path: Path, phantoms: list[Case], fast_params: Path
) -> None:
    """A progress callback sees every case; Ctrl-C (here raised by it) ends in RunInterrupted."""
    from radsurv.features.runner import ProgressEvent, RunInterrupted

    kw = {"params": str(fast_params), "regions": ["WT"], "jobs": 1}
    events: list[ProgressEvent] = []
    extract_features(phantoms, progress=events.append, **kw)
    kinds = [e.kind for e in events]
    assert kinds == ["start", "case", "case", "case", "case", "end"]
    last = events[-2]
    assert (last.done, last.total, last.failed, last.in_flight) == (4, 4, 0, 0)
    assert "4/4 done, 0 in flight, 0 failed" in last.describe()

    def ctrl_c_after_two(event: ProgressEvent) -> None:
        if event.kind == "case" and event.done == 2:
            raise KeyboardInterrupt

    out = tmp_path / "f.csv"
    with pytest.raises(RunInterrupted) as info:
        extract_features(phantoms, output=out, progress=ctrl_c_after_two, **kw)
    assert info.value.exit_code == 130 and (info.value.saved, info.value.total) == (2, 4)
    assert str(info.value).startswith("interrupted: 2/4 cases saved in ")
    assert "rerun the same command" in str(info.value)
    assert len(list(parts_dir(out).glob("*.json"))) == 2 and not out.exists()
    again = extract_features(phantoms, output=out, **kw)
    assert again.status["resumed"].tolist().count(True) == 2


def test_progress_reports_lost_and_rejoined_workers() -> None:
    from radsurv.features.runner import WorkerEvent, _Progress

    seen = []
    bar = _Progress(3, seen.append)
    bar.worker(WorkerEvent("lost", "tcp://10.0.0.5:4001"), ["BraTS20_Training_001"])
    bar.worker(WorkerEvent("joined", "tcp://10.0.0.7:4002"), [])
    bar.worker(WorkerEvent("joined", "tcp://10.0.0.5:4003"), [])
    assert [e.kind for e in seen] == ["worker-lost", "worker-joined", "worker-joined"]
    assert "recomputing BraTS20_Training_001" in seen[0].describe()
    assert not seen[1].rejoined and seen[2].rejoined
    assert "rejoined" in seen[2].describe()
    assert seen[2].lost == ("tcp://10.0.0.5:4001",) and seen[2].joined == ("tcp://10.0.0.5:4003",)
