"""Spread of features across five BraTS 2020 algorithms' segmentations of two real TCGA cases."""

from __future__ import annotations

from pathlib import Path

import pytest

ALGORITHMS = ("hnfnetv1-20", "isen-20", "sanet0-20", "scan-20", "yixinmpl-20")
PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {"shape": None, "firstorder": None},
    "setting": {"binWidth": 0.1, "minimumROIDimensions": 2, "minimumROISize": 10},
}


@pytest.mark.slow
def test_feature_spread_across_segmentation_algorithms(shared_data: Path, tmp_path: Path) -> None:
    from radsurv.data.manifest import build_manifest, write_manifest
    from radsurv.features.robustness import compute_robustness

    root = shared_data / "brainles_tcga"
    patterns = {m: f"*_{s}.nii.gz" for m, s in
                (("flair", "flair"), ("t1", "t1"), ("t1gd", "t1c"), ("t2", "t2"))}  # fmt: skip
    table = build_manifest(
        root, fmt="nifti", modality_patterns=patterns, relative_to=tmp_path, checksum=False,
        find_tables=False,
    )  # fmt: skip
    manifest = write_manifest(table, tmp_path / "tcga.csv")
    masks = [f"{a}={root}/{{case_id}}/segmentations/{a}.nii.gz" for a in ALGORITHMS]
    res = compute_robustness(
        manifest, perturbations="none", masks=masks, reference=ALGORITHMS[0], params=PARAMS,
        regions=["WT", "TC", "ET"], modalities=["t1gd", "flair"], jobs=1,
        output=tmp_path / "robustness.csv",
    )  # fmt: skip
    assert res.failed == [], res.status
    raters = ["original", *(f"mask:{a}" for a in ALGORITHMS[1:])]
    assert sorted(set(res.features["perturbation"])) == sorted(raters)
    spread = res.spread.set_index(["feature", "case_id"])
    assert set(spread.index.get_level_values("case_id")) == {"TCGA-DU-7294", "TCGA-FG-6692"}
    wt = spread.xs("WT_original_shape_MeshVolume", level="feature")
    assert (wt["n_segmentations"] == 5).all()
    # the algorithms agree on the whole tumour's volume within ~15 % (measured: 3 % and 13 %)
    assert (wt["cv"] < 0.2).all() and (wt["cv"] > 0).all()
    # TCGA-DU-7294 has little or no enhancing tumour: the algorithms disagree whether it exists
    et = spread.loc[("ET_original_shape_MeshVolume", "TCGA-DU-7294")]
    assert et["n_segmentations"] < 5
    # most features vary by a few per cent across algorithms (measured medians 0.03-0.05)
    med = res.spread.groupby("case_id")["cv"].median()
    assert (med < 0.15).all(), med
    assert (tmp_path / "robustness_segmentations.csv").is_file()
    assert "Spread across segmentations" in (tmp_path / "robustness.html").read_text()
