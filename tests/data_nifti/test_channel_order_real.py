"""The channel-order check on real MRI whose modality names are known (../shared/data).

TCGA cases (brainles_tcga): all four modalities, named files; every one of the 24 channel
permutations must come back as the true order (never a wrong one). BraTS 2015 cases
(brats2015_deepmedic): only FLAIR and T1c; the check must not claim more than two channels can
tell. The Kaggle-layout path: a real case written as HDF5 slices with permuted channels.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import radsurv.cli  # noqa: F401  (registers the commands)
from radsurv.cli.app import app
from radsurv.data.case import Case
from radsurv.data.channel_order import SIGNATURE_THRESHOLDS, ChannelReport, check_channel_order
from radsurv.data.nifti import read_nifti_case

MODALITIES = ("flair", "t1", "t1gd", "t2")
TCGA = ("TCGA-DU-7294", "TCGA-FG-6692")  # DU: no ET in the fused mask; FG: with ET
TCGA_PATTERNS = {"flair": "*_flair.nii.gz", "t1": "*_t1.nii.gz", "t1gd": "*_t1c.nii.gz"}
TCGA_PATTERNS["t2"] = "*_t2.nii.gz"
TCGA_SEG = "segmentations/fusion-mav.nii.gz"
DEEPMEDIC_PATTERNS = {"flair": "Flair_subtrMeanDivStd.nii.gz", "t1gd": "T1c_subtrMeanDivStd.nii.gz"}

runner = CliRunner()


@pytest.fixture(scope="module")
def tcga(shared_data: Path) -> dict[str, Case]:
    """The two TCGA cases, read once (about 1 s each)."""
    root = shared_data / "brainles_tcga"
    return {
        case_id: read_nifti_case(
            root / case_id,
            modality_patterns=TCGA_PATTERNS,
            seg_pattern=TCGA_SEG,
            label_convention="brats2020",
        )
        for case_id in TCGA
    }


@pytest.fixture(scope="module")
def deepmedic(shared_data: Path) -> list[Case]:
    """The four BraTS 2015 cases (FLAIR and T1c only, z-scored in the brain)."""
    root = shared_data / "brats2015_deepmedic"
    return [
        read_nifti_case(
            folder,
            modality_patterns=DEEPMEDIC_PATTERNS,
            seg_pattern="OTMultiClass.nii.gz",
            label_convention="brats2015",
        )
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
    ]


def relabelled(case: Case, truth: tuple[str, ...], names: tuple[str, ...]) -> Case:
    """Channel i holds the true modality ``truth[i]`` but is named ``names[i]``."""
    images = {name: case.images[true] for name, true in zip(names, truth, strict=True)}
    return Case(case.case_id, images, case.labels, provenance={"channel_order": list(names)})


def outcome(report: ChannelReport, truth: tuple[str, ...]) -> str:
    """``right``, ``undetermined`` or ``WRONG`` (a named order that is not the truth)."""
    if report.implied is None:
        return "undetermined"
    return "right" if report.implied[: len(truth)] == truth else "WRONG"


@pytest.mark.parametrize("case_id", TCGA)
def test_the_true_order_is_consistent_with_its_evidence(tcga: dict[str, Case], case_id: str):
    report = check_channel_order([tcga[case_id]])
    assert report.status == "consistent" and report.agrees is True, report.verdict
    assert report.implied == MODALITIES
    assert "agree with the channel order flair,t1,t1gd,t2" in report.verdict
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["status"] == "consistent" and doc["thresholds"] == SIGNATURE_THRESHOLDS
    evidence = doc["evidence"]["configured"]
    names = {s["name"] for s in evidence}
    assert {"oedema", "csf", "vessels", "t1_pair_alike"} <= names
    for sig in evidence:
        assert set(sig) >= {"name", "modalities", "channels", "value", "threshold", "outcome"}
        assert sig["outcome"] != "contradicts", sig
    csf = next(s for s in evidence if s["name"] == "csf")
    assert csf["modalities"] == ["t2", "flair"] and csf["value"] > 2 * csf["threshold"]


@pytest.mark.parametrize("case_id", TCGA)
def test_every_permutation_gives_the_true_order_back(tcga: dict[str, Case], case_id: str):
    case = tcga[case_id]
    results = {}
    for truth in itertools.permutations(MODALITIES):
        # the channels hold `truth` but carry the default names flair,t1,t1gd,t2
        report = check_channel_order([relabelled(case, truth, MODALITIES)])
        results[truth] = outcome(report, truth)
        if truth == MODALITIES:
            assert report.status == "consistent"
        elif report.implied is not None:
            assert report.status == "wrong" and f"--channel-order {','.join(truth)}" in (
                report.verdict
            )
    assert "WRONG" not in results.values(), results
    assert list(results.values()) == ["right"] * 24, results  # identified every time


def test_the_order_the_old_check_advised_is_refused(tcga: dict[str, Case]) -> None:
    """The issue: a mean-in-sd rule advised t1gd,flair,t1,t2 for correctly ordered data."""
    case = tcga["TCGA-FG-6692"]
    named = relabelled(case, MODALITIES, MODALITIES)
    advised = check_channel_order([named], "t1gd,flair,t1,t2")
    assert advised.status == "wrong" and advised.implied == MODALITIES
    contradicted = [s for s in advised.evidence["configured"] if s.outcome == "contradicts"]
    # under the old advice the channel called FLAIR (really T1) shows less oedema than "T1"
    assert any(s.name == "oedema" and s.modalities == ("flair", "t1") for s in contradicted)


@pytest.mark.slow
@pytest.mark.parametrize("case_id", TCGA)
def test_two_or_three_channels_never_give_a_wrong_order(tcga: dict[str, Case], case_id: str):
    """Every subset of 2 or 3 modalities, under every naming of its channels."""
    case = tcga[case_id]
    results = {}
    for k in (2, 3):
        for truth in itertools.combinations(MODALITIES, k):
            for names in itertools.permutations(truth):
                report = check_channel_order([relabelled(case, truth, names)])
                results[(truth, names)] = outcome(report, truth)
    assert "WRONG" not in results.values(), {k: v for k, v in results.items() if v == "WRONG"}


def test_two_modalities_verify_only_what_they_can(deepmedic: list[Case]) -> None:
    """FLAIR + T1c: not swapped is verifiable; FLAIR vs T2 and T1 vs T1Gd are not."""
    for case in [*deepmedic, None]:
        cases = deepmedic if case is None else [case]
        report = check_channel_order(cases)
        assert report.status == "undetermined" and report.implied is None, report.verdict
        assert "the configured order is one of them" in report.verdict
        by_name = {s.name: s for s in report.evidence["configured"]}
        assert by_name["oedema"].outcome == "supports" and by_name["oedema"].value > 0.3
        assert by_name["et_over_ed"].outcome == "supports"
        assert "t1gd" not in report.possible[0] and report.possible[1] == ["t1", "t1gd"]
        (swap_note,) = [n for n in report.notes if "exchanging two" in n]
        assert "channels 0 and 1 (flair, t1gd): oedema -" in swap_note
        swapped = check_channel_order(
            [relabelled(c, ("flair", "t1gd"), ("t1gd", "flair")) for c in cases]
        )
        assert swapped.status == "undetermined" and swapped.implied is None, swapped.verdict
        assert all(s.outcome == "contradicts" for s in swapped.evidence["configured"])
        assert any("not among them" in note for note in swapped.notes)


def test_kaggle_layout_with_permuted_channels_gets_the_right_advice(
    shared_data: Path, tmp_path: Path
) -> None:
    from radsurv.data.convert import convert_dataset

    written = ("t2", "t1gd", "flair", "t1")
    pack = tmp_path / "pack"
    report = convert_dataset(
        shared_data / "brainles_tcga" / "TCGA-FG-6692",
        pack,
        "kaggle",
        fmt="nifti",
        modality_patterns=TCGA_PATTERNS,
        seg_pattern=TCGA_SEG,
        label_convention="brats2020",
        channel_order=written,
    )
    assert report.ok, report.to_frame()
    out = tmp_path / "check.json"
    args = ["check", str(pack), "--channels", "--json", str(out), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output  # the default order is wrong for this pack
    assert "--channel-order t2,t1gd,flair,t1" in " ".join(result.output.split())
    doc = json.loads(out.read_text())
    assert [c["ok"] for c in doc["cases"]] == [True]
    channels = doc["channels"]
    assert channels["status"] == "wrong" and channels["agrees"] is False
    assert channels["configured"] == list(MODALITIES) and channels["implied"] == list(written)
    assert {s["name"] for s in channels["evidence"]["implied"]} >= {"csf", "et", "oedema"}
    # following the advice: consistent, exit 0
    result = runner.invoke(app, [*args, "--channel-order", ",".join(written)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["channels"]["status"] == "consistent"


def test_a_brats2023_named_case_is_consistent(shared_data: Path, tmp_path: Path) -> None:
    """The same case with BraTS 2023 file names (t2f, t1n, t1c, t2w), through the CLI."""
    source = shared_data / "brainles_tcga" / "TCGA-DU-7294"
    folder = tmp_path / "brats2023" / "TCGA-DU-7294"
    folder.mkdir(parents=True)
    for suffix, name in (("t2f", "flair"), ("t1n", "t1"), ("t1c", "t1c"), ("t2w", "t2")):
        (folder / f"TCGA-DU-7294-{suffix}.nii.gz").symlink_to(
            source / f"TCGA-DU-7294_{name}.nii.gz"
        )
    (folder / "TCGA-DU-7294-seg.nii.gz").symlink_to(source / TCGA_SEG)
    out = tmp_path / "check.json"
    args = ["check", str(folder.parent), "--channels", "--json", str(out), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    channels = json.loads(out.read_text())["channels"]
    assert channels["status"] == "consistent", channels["verdict"]
    assert channels["implied"] == list(MODALITIES)
