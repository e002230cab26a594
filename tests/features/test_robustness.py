"""Feature robustness: perturbations, ICC per feature, the CLI and its outputs, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radsurv.cli import app
from radsurv.data.case import Case
from radsurv.errors import ConfigError
from radsurv.evaluation.browser import find_chromium
from radsurv.features.icc import icc_table
from radsurv.features.perturb import noise_sd, parse_perturbations, perturb_mask
from radsurv.features.robustness import compute_robustness, describe_feature

SHAPE_ONLY = {
    "imageType": {"Original": {}},
    "featureClass": {"shape": ["MeshVolume", "Sphericity"], "firstorder": ["Mean"]},
    "setting": {"binWidth": 0.5, "minimumROIDimensions": 2, "minimumROISize": 10},
}


def _ball_cases(n: int = 8, size: int = 56, seed: int = 0) -> list[Case]:
    """Cases with one large spherical tumour (label 2, WT) of radius 10-22 voxels."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:size, :size, :size]
    cases = []
    for i, radius in enumerate(np.linspace(10, 22, n)):
        c = size / 2 + rng.uniform(-2, 2, 3)
        ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius**2
        image = (rng.normal(1.0, 0.2, ball.shape) + ball).astype(np.float32)
        cases.append(Case(f"ball{i}", {"t1gd": image}, (ball * 2).astype(np.uint8)))
    return cases


def _hand_icc(x: np.ndarray) -> float:
    """ICC(2,1) from the two-way ANOVA mean squares, independent of radsurv."""
    n, k = x.shape
    g = x.mean()
    msr = k * ((x.mean(1) - g) ** 2).sum() / (n - 1)
    msc = n * ((x.mean(0) - g) ** 2).sum() / (k - 1)
    mse = (((x - g) ** 2).sum() - msr * (n - 1) - msc * (k - 1)) / ((n - 1) * (k - 1))
    return (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)


def test_parse_perturbations() -> None:
    perts = parse_perturbations("erode,rotate:10,noise,noise")
    assert [p.label for p in perts] == ["erode", "rotate:10", "noise", "noise#2"]
    assert perts[1].value == 10 and perts[0].value == 1
    assert parse_perturbations("none") == []
    with pytest.raises(ConfigError, match="unknown"):
        parse_perturbations("blur")
    with pytest.raises(ConfigError, match="whole number"):
        parse_perturbations("erode:0.5")


def test_mask_perturbations_move_the_boundary_by_about_a_voxel() -> None:
    zz, yy, xx = np.mgrid[:40, :40, :40]
    ball = (zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 12**2
    sp = (1.0, 1.0, 1.0)
    volumes = {
        p.label: perturb_mask(ball, p, sp, np.random.default_rng(0)).sum()
        for p in parse_perturbations("erode,dilate,contour,translate,rotate:5")
    }
    v = ball.sum()
    assert volumes["erode"] < v < volumes["dilate"]
    # one voxel of a radius-12 ball is ~25 % of the volume; the others move it far less
    assert 0.65 < volumes["erode"] / v < 0.85 and 1.15 < volumes["dilate"] / v < 1.35
    for name in ("contour", "translate", "rotate:5"):
        assert abs(volumes[name] / v - 1) < 0.1, name


def test_noise_level_estimate() -> None:
    rng = np.random.default_rng(0)
    smooth = np.linspace(1, 3, 32)[None, None, :] * np.ones((32, 32, 32))
    assert noise_sd(smooth + rng.normal(0, 0.2, smooth.shape)) == pytest.approx(0.2, rel=0.05)


def test_describe_feature() -> None:
    assert describe_feature("t1gd_ET_original_glcm_Contrast") == {
        "feature_class": "glcm", "image_type": "original", "modality": "t1gd", "region": "ET",
    }  # fmt: skip
    d = describe_feature("WT_wavelet-LLH_firstorder_Mean")
    assert (d["feature_class"], d["image_type"], d["modality"]) == (
        "firstorder",
        "wavelet-LLH",
        "none",
    )


def test_mesh_volume_of_large_tumours_is_robust_to_one_voxel_erosion() -> None:
    res = compute_robustness(
        _ball_cases(), perturbations="erode", params=SHAPE_ONLY, regions=["WT"], jobs=1
    )
    assert res.failed == []
    long = res.features.set_index(["case_id", "perturbation"])["WT_original_shape_MeshVolume"]
    assert (long.xs("erode", level=1) < long.xs("original", level=1)).all()  # erosion acted
    row = res.robustness.set_index("feature").loc["WT_original_shape_MeshVolume"]
    assert row["icc"] > 0.9 and row["n_cases"] == 8 and row["n_perturbations"] == 2
    assert row["icc_low"] < row["icc"] <= row["icc_high"]


def test_same_seed_same_values_other_seed_other_values(phantoms: list[Case]) -> None:
    kw = {"perturbations": "contour,noise", "params": SHAPE_ONLY, "regions": ["WT"], "jobs": 1}
    a = compute_robustness(phantoms[:2], seed=3, **kw).features
    b = compute_robustness(phantoms[:2], seed=3, **kw).features
    c = compute_robustness(phantoms[:2], seed=4, **kw).features
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


# ------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, phantoms: list[Case]) -> tuple[Path, Path]:
    """A NIfTI cohort of 5 phantoms, its manifest, and a folder of 'predicted' masks."""
    import SimpleITK as sitk
    from scipy import ndimage

    from radsurv.data.manifest import build_manifest, write_manifest
    from radsurv.data.nifti import write_nifti_case
    from radsurv.data.synthetic import make_phantom_case

    root = tmp_path_factory.mktemp("robust_cohort")
    cases = [*phantoms[:4], make_phantom_case(5, 0, phantoms[0].shape)]
    pred = root / "pred"
    pred.mkdir()
    for case in cases:
        write_nifti_case(case, root / "data")
        labels = case.labels.copy()
        grown = ndimage.binary_dilation(labels > 0) & (labels == 0)
        labels[grown] = 2  # the 'prediction' has one more voxel of oedema around the tumour
        image = sitk.GetImageFromArray(labels)
        image.SetSpacing(case.spacing)
        sitk.WriteImage(image, str(pred / f"{case.case_id}.nii.gz"))
    table = build_manifest(root / "data", relative_to=root, checksum=False)
    return write_manifest(table, root / "data_manifest.csv"), pred


def test_cli_end_to_end_and_icc_recomputed_from_the_long_table(
    tmp_path: Path, cohort: tuple[Path, Path], fast_params: Path
) -> None:
    manifest, pred = cohort
    out = tmp_path / "robustness.csv"
    args = [
        "robustness", "--manifest", str(manifest), "-o", str(out), "--params", str(fast_params),
        "--regions", "ET,WT", "--modalities", "t1gd,flair", "--perturbations",
        "erode,translate,noise", "--masks", f"pred={pred}", "--jobs", "2", "--seed", "1",
        "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rob = pd.read_csv(out)
    assert list(rob.columns) == [
        "feature", "icc", "icc_low", "icc_high", "n_cases", "n_perturbations",
        "feature_class", "image_type", "modality", "region",
    ]  # fmt: skip
    long = pd.read_csv(tmp_path / "robustness_features.csv")
    assert list(long.columns[:2]) == ["case_id", "perturbation"]
    raters = ["original", "erode", "translate", "noise", "mask:pred"]
    assert list(dict.fromkeys(long["perturbation"])) == raters
    assert len(long) == 5 * len(raters) and set(rob["feature"]) == set(long.columns[2:])
    # recompute every ICC from the long table with a separate small ANOVA
    checked = 0
    for row in rob.itertuples():
        wide = long.pivot(index="case_id", columns="perturbation", values=row.feature)
        wide = wide[raters].dropna()
        assert len(wide) == row.n_cases and row.n_perturbations == len(raters)
        x = wide.to_numpy()
        if len(x) < 2 or np.ptp(x) == 0:
            assert np.isnan(row.icc)
            continue
        assert row.icc == pytest.approx(_hand_icc(x), abs=1e-10, rel=1e-10), row.feature
        checked += 1
    assert checked > 20
    # a pure-noise pseudo-feature (values unrelated to the case) gets an ICC near 0
    rng = np.random.default_rng(0)
    noisy = pd.concat([long] * 8, ignore_index=True)
    noisy["case_id"] = [f"{c}_{i // len(long)}" for i, c in enumerate(noisy["case_id"])]
    noisy["pseudo"] = rng.normal(size=len(noisy))
    assert abs(icc_table(noisy, ["pseudo"]).loc["pseudo", "icc"]) < 0.15
    seg = pd.read_csv(tmp_path / "robustness_segmentations.csv")
    assert {"feature", "case_id", "n_segmentations", "mean", "sd", "cv"} <= set(seg.columns)
    assert (seg["n_segmentations"].dropna() <= 2).all()
    assert "mask:pred" in (tmp_path / "robustness.html").read_text()
    status = pd.read_csv(tmp_path / "robustness.status.csv")
    assert status["status"].tolist() == ["ok"] * 5


def test_cli_records_a_failing_case_and_goes_on(
    tmp_path: Path, cohort: tuple[Path, Path], fast_params: Path
) -> None:
    manifest, pred = cohort
    partial = tmp_path / "pred"
    partial.mkdir()
    for f in sorted(pred.glob("*.nii.gz"))[1:]:  # the first case has no predicted mask
        (partial / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "r.csv"
    args = [
        "robustness", "--manifest", str(manifest), "-o", str(out), "--params", str(fast_params),
        "--regions", "WT", "--modalities", "t1gd", "--perturbations", "none", "--masks",
        str(partial), "--jobs", "1", "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    status = pd.read_csv(tmp_path / "r.status.csv")
    assert status["status"].tolist() == ["failed"] + ["ok"] * 4
    assert "not found" in status.loc[0, "error"]
    assert pd.read_csv(out)["n_cases"].max() == 4


@pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium on PATH (apt-get install chromium)",
)
def test_robustness_page_opens_in_a_real_browser(
    tmp_path: Path, phantoms: list[Case], screenshot_dir: Path
) -> None:
    from radsurv.evaluation.browser import check_html_in_browser

    compute_robustness(
        phantoms[:3], perturbations="erode,dilate", masks={"gt": {c.case_id: c.labels for c in
        phantoms[:3]}}, params=SHAPE_ONLY, jobs=1, output=tmp_path / "robustness.csv",
    )  # fmt: skip
    check = check_html_in_browser(tmp_path / "robustness.html", screenshot_dir / "robustness.png")
    assert not check.console_errors, check.console_errors
    assert check.images == check.images_loaded >= 5


def test_original_rows_equal_extract_features(
    phantoms: list[Case], fast_params: Path, rel_diff
) -> None:
    """The wider crop (room for the perturbations) leaves the unperturbed features unchanged."""
    from radsurv.features import extract_features

    kw = {"params": str(fast_params), "regions": ["ET", "WT"], "jobs": 1}
    plain = extract_features(phantoms[:2], **kw).features.set_index("case_id")
    res = compute_robustness(phantoms[:2], perturbations="rotate:10,dilate", **kw)
    original = res.features[res.features["perturbation"] == "original"].set_index("case_id")
    for cid in plain.index:
        worst, where = rel_diff(
            plain.loc[cid].to_dict(), original.loc[cid, plain.columns].to_dict()
        )
        assert worst <= 1e-9, (cid, where, worst)


@pytest.mark.slow
def test_dask_local_cluster_equals_local_run(phantoms: list[Case]) -> None:
    from distributed import LocalCluster

    kw = {"perturbations": "erode,noise", "params": SHAPE_ONLY, "regions": ["WT"], "seed": 2}
    local = compute_robustness(phantoms[:2], jobs=1, **kw)
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
        scheduler_kwargs={"host": "127.0.0.1"}, dashboard_address=None,
    ) as cluster:  # fmt: skip
        on_dask = compute_robustness(phantoms[:2], dask=cluster.scheduler_address, **kw)
    assert on_dask.provenance["backend"] == "dask"
    pd.testing.assert_frame_equal(on_dask.features, local.features)


def test_cli_bad_options_exit_2(tmp_path: Path, cohort: tuple[Path, Path]) -> None:
    manifest, _ = cohort
    base = ["robustness", "--manifest", str(manifest), "-o", str(tmp_path / "r.csv")]
    for extra, message in (
        (["--perturbations", "blur"], "unknown 'blur'"),
        (["--perturbations", "none"], "nothing to compare"),
        (["--reference", "isen"], "not a mask set name"),
        (["--masks", str(tmp_path / "missing")], "not a folder"),
    ):
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
