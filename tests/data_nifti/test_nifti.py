"""Reading and writing BraTS NIfTI case folders."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radsurv.data.case import Case
from radsurv.data.nifti import (
    GeometryError,
    NiftiError,
    find_nifti_cases,
    read_mask_nifti,
    read_nifti_case,
    write_nifti_case,
)
from radsurv.errors import DataError, LabelError


@pytest.mark.parametrize("naming", ["brats2020", "brats2023"])
def test_reads_both_brats_namings(nt, tmp_path: Path, make_case_folder, naming: str) -> None:
    folder = make_case_folder(tmp_path, "BraTS-GLI-00001-000", naming, seed=3)
    case = read_nifti_case(folder, label_convention="brats2020")
    images, mask = nt.make_arrays(3)
    assert case.case_id == "BraTS-GLI-00001-000"
    assert case.modalities == ["flair", "t1", "t1gd", "t2"]
    for modality, array in images.items():
        assert case.images[modality].dtype == np.float32
        np.testing.assert_array_equal(case.images[modality], array)
    np.testing.assert_array_equal(case.labels, mask)
    assert case.spacing == pytest.approx(nt.SPACING)
    assert case.origin == pytest.approx(nt.ORIGIN)
    assert case.provenance["naming"] == naming
    case.validate()


def test_t1_pattern_does_not_take_t1ce(nt, tmp_path: Path, make_case_folder) -> None:
    folder = make_case_folder(tmp_path, "BraTS20_Training_002", modalities=("t1gd",), seed=1)
    case = read_nifti_case(folder)
    assert case.modalities == ["t1gd"]
    np.testing.assert_array_equal(case.images["t1gd"], nt.make_arrays(1)[0]["t1gd"])


def test_user_mapping_and_missing_modalities(nt, tmp_path: Path, make_case_folder) -> None:
    naming = {"flair": "FLAIR_x.nii.gz", "t1gd": "post.nii", "seg": "truth.nii.gz"}
    folder = make_case_folder(tmp_path, "p7", naming, modalities=("flair", "t1gd"), seed=2)
    case = read_nifti_case(
        folder,
        modality_patterns={"flair": "FLAIR_*.nii.gz", "t1gd": "post.nii*"},
        seg_pattern="truth.nii.gz",
        label_convention="brats2020",
    )
    assert case.modalities == ["flair", "t1gd"]
    np.testing.assert_array_equal(case.images["flair"], nt.make_arrays(2)[0]["flair"])
    assert case.labels is not None and set(np.unique(case.labels)) == {0, 1, 2, 4}


def test_case_without_mask(nt, tmp_path: Path, make_case_folder) -> None:
    folder = make_case_folder(tmp_path, "BraTS20_Validation_001", labels=None)
    case = read_nifti_case(folder)
    assert case.labels is None
    assert case.modalities == ["flair", "t1", "t1gd", "t2"]


@pytest.mark.parametrize(
    ("values", "convention", "expected"),
    [
        ((1, 2, 4), "brats2020", (1, 2, 4)),
        ((1, 2, 3, 4), "brats2015", (1, 2, 1, 4)),
        ((1, 2, 3), "brats2023", (1, 2, 4)),
    ],
)
def test_label_conventions_explicit(
    nt, tmp_path: Path, make_case_folder, values, convention, expected
) -> None:
    folder = make_case_folder(tmp_path, "c1", labels=values, seg_dtype=np.float32)
    case = read_nifti_case(folder, label_convention=convention)
    for i, want in enumerate(expected):
        assert set(np.unique(case.labels[1 + i])) == {0, want}
    assert case.provenance["label_convention"] == convention


@pytest.mark.parametrize(
    ("values", "detected", "et_value"),
    [((1, 2, 4), "brats2020", 4), ((1, 2, 3, 4), "brats2015", 4), ((1, 2, 3), "brats2023", 3)],
)
def test_label_convention_detection_is_said(
    nt, tmp_path: Path, make_case_folder, caplog, values, detected, et_value
) -> None:
    folder = make_case_folder(tmp_path, "c2", labels=values)
    with caplog.at_level(logging.INFO, logger="radsurv.data.nifti"):
        case = read_nifti_case(folder)
    assert case.provenance["label_convention"] == detected
    assert case.provenance["label_convention_reason"].startswith("detected")
    message = " ".join(r.getMessage() for r in caplog.records)
    assert f"label convention {detected} detected" in message
    assert "--label-convention" in message
    # the ET voxels of the source end up as canonical 4
    et_slice = 1 + values.index(et_value)
    assert set(np.unique(case.labels[et_slice])) == {0, 4}


def test_wrong_convention_is_an_error_naming_the_file(nt, tmp_path: Path, make_case_folder) -> None:
    folder = make_case_folder(tmp_path, "c3", labels=(1, 2, 3, 4))
    with pytest.raises(LabelError, match=r"c3_seg\.nii\.gz.*\[3\].*--label-convention"):
        read_nifti_case(folder, label_convention="brats2020")


def test_geometry_mismatch_names_both_files(nt, tmp_path: Path, make_case_folder) -> None:
    folder = make_case_folder(tmp_path, "c4", modalities=("flair", "t1"))
    images, _ = nt.make_arrays(0)
    nt.write_image(folder / "c4_t1.nii.gz", images["t1"], spacing=(1.0, 1.0, 1.0))
    with pytest.raises(GeometryError, match=r"c4_t1\.nii\.gz.*c4_flair\.nii\.gz.*spacing"):
        read_nifti_case(folder)
    # a shifted mask is caught too
    folder = make_case_folder(tmp_path, "c5")
    nt.write_image(folder / "c5_seg.nii.gz", nt.make_arrays(0)[1], origin=(0.0, 0.0, 0.0))
    with pytest.raises(GeometryError, match=r"mask c5_seg\.nii\.gz.*origin"):
        read_nifti_case(folder)


def test_size_mismatch(nt, tmp_path: Path, make_case_folder) -> None:
    folder = make_case_folder(tmp_path, "c6", modalities=("flair", "t2"))
    nt.write_image(folder / "c6_t2.nii.gz", np.zeros((6, 10, 9), dtype=np.float32))
    with pytest.raises(GeometryError, match=r"size \(x, y, z\) \(8, 10, 6\) vs \(9, 10, 6\)"):
        read_nifti_case(folder)


def test_folder_problems(nt, tmp_path: Path, make_case_folder) -> None:
    with pytest.raises(NiftiError, match="does not exist"):
        read_nifti_case(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(NiftiError, match="--modality"):
        read_nifti_case(empty)
    folder = make_case_folder(
        tmp_path,
        "c7",
        {"flair": "a_fl.nii.gz", "t1": "b_fl.nii.gz"},
        modalities=("flair", "t1"),
        labels=None,
    )
    with pytest.raises(NiftiError, match="2 files match the flair pattern"):
        read_nifti_case(folder, modality_patterns={"flair": "*_fl.nii.gz"})
    bad = make_case_folder(tmp_path, "c8", modalities=("flair",), labels=None)
    (bad / "c8_flair.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(NiftiError, match=r"cannot read NIfTI file .*c8_flair\.nii\.gz"):
        read_nifti_case(bad)
    assert issubclass(NiftiError, DataError)


def test_find_cases_any_depth(nt, tmp_path: Path, make_case_folder) -> None:
    make_case_folder(tmp_path / "train" / "HGG", "BraTS20_Training_002")
    make_case_folder(tmp_path / "train" / "LGG", "BraTS20_Training_001", labels=None)
    make_case_folder(tmp_path, "BraTS-GLI-00003-000", "brats2023")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("x")
    cases = find_nifti_cases(tmp_path)
    assert list(cases) == ["BraTS-GLI-00003-000", "BraTS20_Training_001", "BraTS20_Training_002"]
    assert cases["BraTS20_Training_001"] == tmp_path / "train" / "LGG" / "BraTS20_Training_001"
    # root itself a case folder
    assert list(find_nifti_cases(cases["BraTS20_Training_002"])) == ["BraTS20_Training_002"]
    make_case_folder(tmp_path / "dup", "BraTS20_Training_001")
    with pytest.raises(NiftiError, match="two case folders are named BraTS20_Training_001"):
        find_nifti_cases(tmp_path)
    with pytest.raises(NiftiError, match="no NIfTI case folder"):
        find_nifti_cases(tmp_path / "docs")


def test_write_then_read_keeps_values_and_labels(nt, tmp_path: Path) -> None:
    images, mask = nt.make_arrays(5)
    mask[mask == 4] = 4
    case = Case(
        "BraTS20_Training_007",
        {"flair": images["flair"], "t1gd": images["t1gd"] * 1e-3 - 7.0},
        labels=mask,
        spacing=nt.SPACING,
        origin=nt.ORIGIN,
    )
    folder = write_nifti_case(case, tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == [
        "BraTS20_Training_007_flair.nii.gz",
        "BraTS20_Training_007_seg.nii.gz",
        "BraTS20_Training_007_t1ce.nii.gz",
    ]
    seg = sitk.ReadImage(str(folder / "BraTS20_Training_007_seg.nii.gz"))
    assert set(np.unique(sitk.GetArrayFromImage(seg))) == {0, 1, 2, 4}
    back = read_nifti_case(folder)
    assert back.provenance["label_convention"] == "brats2020"
    for modality, array in case.images.items():
        np.testing.assert_array_equal(back.images[modality], array)  # stored values, no rescale
    np.testing.assert_array_equal(back.labels, mask)
    assert back.spacing == pytest.approx(nt.SPACING)


def test_read_mask_nifti_checks_the_grid(nt, tmp_path: Path, make_case_folder) -> None:
    case = read_nifti_case(make_case_folder(tmp_path, "c9", labels=None))
    _, mask = nt.make_arrays(0, labels=(1, 2, 3))
    good = nt.write_image(tmp_path / "pred" / "c9.nii.gz", mask)
    labels = read_mask_nifti(good, case, label_convention="brats2023")
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1, 2, 4}
    wrong = nt.write_image(tmp_path / "pred" / "c9_small.nii.gz", mask[:, :, :5])
    with pytest.raises(GeometryError) as info:
        read_mask_nifti(wrong, case)
    assert str(nt.SHAPE) in str(info.value) and "(6, 10, 5)" in str(info.value)
    moved = nt.write_image(tmp_path / "pred" / "c9_moved.nii.gz", mask, origin=(0.0, 0.0, 0.0))
    with pytest.raises(GeometryError, match="origin"):
        read_mask_nifti(moved, case)


def test_brats2020_odd_mask_name_and_4d_files(
    nt, tmp_path: Path, make_case_folder, caplog: pytest.LogCaptureFixture
) -> None:
    # BraTS 2020 case 355 ships its mask as "W39_1998.09.19_Segm.nii"
    folder = make_case_folder(tmp_path, "BraTS20_Training_355", labels=None)
    nt.write_image(folder / "W39_1998.09.19_Segm.nii", nt.make_arrays(0)[1])
    with caplog.at_level(logging.WARNING):
        case = read_nifti_case(folder)
    assert case.labels is not None and set(np.unique(case.labels)) == {0, 1, 2, 4}
    assert "W39_1998.09.19_Segm.nii as the label mask" in caplog.text
    four_d = make_case_folder(tmp_path, "c10", modalities=("flair",), labels=None)
    sitk.WriteImage(sitk.Image([4, 4, 4, 2], sitk.sitkFloat32), str(four_d / "c10_flair.nii.gz"))
    with pytest.raises(NiftiError, match=r"c10_flair\.nii\.gz: expected a 3-D scalar image"):
        read_nifti_case(four_d)
