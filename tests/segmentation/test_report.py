"""The segmentation report: overlays, scores worst first, self-contained HTML, a real browser."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from radsurv.data.case import Case
from radsurv.evaluation.browser import find_chromium
from radsurv.segmentation import evaluate_masks
from radsurv.segmentation.predict import write_mask
from radsurv.segmentation.report import (
    GREY_LEVELS,
    LABEL_COLOURS,
    background_modality,
    tumour_centre,
    write_segmentation_report,
)

SHAPE = (8, 12, 12)  # (z, y, x)


def block_case(case_id: str, seed: int, spacing=(1.0, 1.0, 1.0)) -> Case:
    """A noise image with a 4x4x4 oedema block (64 voxels) holding a 2x2x2 necrotic core."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:6, 4:8, 4:8] = 2
    labels[3:5, 5:7, 5:7] = 1
    images = {m: rng.normal(1.0, 0.2, SHAPE).astype(np.float32) for m in ("flair", "t1gd")}
    return Case(case_id, images, labels, spacing=spacing)


def shifted(labels: np.ndarray, dx: int) -> np.ndarray:
    out = np.zeros_like(labels)
    out[:, :, dx:] = labels[:, :, : labels.shape[2] - dx]
    return out


@pytest.fixture
def scored_folder(tmp_path: Path) -> tuple[Path, list[Case]]:
    """Three cases whose WT Dice is known by hand, written as predicted NIfTI masks.

    - ``perfect``: the reference itself, Dice 1 everywhere.
    - ``shifted``: the 4x4x4 WT block moved 2 voxels along x: overlap 4x4x2 = 32 of 64 + 64,
      WT Dice 2*32/128 = 0.5; the 8-voxel core moved by 2 does not overlap: TC Dice 0.
    - ``half``: only the block's first 2 x-columns kept (4x4x2 = 32 voxels, no core):
      WT Dice 2*32/(64+32) = 0.667, TC Dice 0 (prediction empty, reference not).
    ET is empty in both everywhere: Dice 1 (BraTS convention).
    """
    cases = [block_case(cid, i) for i, cid in enumerate(["perfect", "shifted", "half"])]
    cases[2].spacing = (1.0, 1.0, 2.0)  # anisotropic: the coronal view is twice as tall
    preds = {"perfect": cases[0].labels, "shifted": shifted(cases[1].labels, 2)}
    half = np.zeros(SHAPE, np.uint8)
    half[2:6, 4:8, 4:6] = 2
    preds["half"] = half
    pred_dir = tmp_path / "pred"
    for case in cases:
        write_mask(case, preds[case.case_id], pred_dir / f"{case.case_id}.nii.gz")
    return pred_dir, cases


def images(html: str) -> list[tuple[str, str]]:
    """(class, src) of every <img>."""
    return [
        (m.group(1) or "", m.group(2))
        for m in re.finditer(r'<img (?:class="([^"]*)" )?src="([^"]*)"', html)
    ]


def case_section(html: str, case_id: str) -> str:
    start = html.index(f"<h3>{case_id}")
    end = html.find("</section>", start)
    return html[start:end]


def table_rows(html: str) -> list[list[str]]:
    body = html[html.index('<table id="scores">') :]
    body = body[body.index("<tbody>") : body.index("</tbody>")]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)
        ]
        for r in rows
    ]


def assert_self_contained(html: str) -> None:
    assert "http:" not in html and "https:" not in html
    assert "<script" not in html and "<link" not in html and "url(" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:  # every embedded image is a real PNG
        Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).verify()


def test_report_shows_overlays_and_scores_worst_first(scored_folder):
    pred_dir, cases = scored_folder

    def broken() -> Case:
        raise OSError("disk went away")

    calls = []
    out = write_segmentation_report(
        pred_dir,
        [*cases, block_case("no_mask", 9), ("unreadable", broken)],
        progress=lambda done, total, what: calls.append((done, total, what)),
    )
    assert out == pred_dir / "report.html"
    assert calls[-1] == (5, 5, "cases")
    html = out.read_text()
    assert_self_contained(html)

    rows = table_rows(html)
    assert [r[0] for r in rows] == ["no_mask", "unreadable", "shifted", "half", "perfect"]
    assert "no mask" in rows[0][1] and "disk went away" in rows[1][1]
    by_id = {r[0]: r for r in rows}
    # columns: WT, TC, ET Dice, mean Dice, WT, TC, ET HD95, then volumes
    assert by_id["shifted"][1:5] == ["0.500", "0.000", "1.000", "0.500"]
    assert by_id["half"][1:5] == ["0.667", "0.000", "1.000", f"{(2 / 3 + 1) / 3:.3f}"]
    assert by_id["perfect"][1:8] == ["1.000"] * 4 + ["0"] * 3
    assert by_id["half"][8].startswith("0.0640 / 0.128")  # WT mL: 32 vs 64 voxels of 2 mm3

    for case in cases:
        section = case_section(html, case.case_id)
        kinds = [cls for cls, _ in images(section)]
        assert kinds.count("overlay prediction") == 3 and kinds.count("overlay reference") == 3
    assert not images(case_section(html, "no_mask")) and "disk went away" in html
    assert 'id="legend"' in html
    for name, _, hexa in LABEL_COLOURS.values():
        assert f"background: {hexa}" in html and name in html
    assert html.count('alt="distribution of') == 1


def test_overlays_cut_through_the_tumour_at_the_physical_aspect(scored_folder):
    pred_dir, cases = scored_folder
    html = write_segmentation_report(pred_dir, cases).read_text()
    section = case_section(html, "half")  # spacing (1, 1, 2): z voxels are 2 mm tall
    decoded = [
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) for _, src in images(section)
    ]
    axial, coronal, sagittal = decoded[:3]
    assert axial.size[0] == axial.size[1]  # 12 x 12 mm
    assert coronal.size[1] / coronal.size[0] == pytest.approx(8 * 2 / 12, rel=0.05)
    # palette index // GREY_LEVELS: 0 grey, 1 NCR, 2 ED, 3 ET. The reference WT's centre of mass
    # is voxel (4, 6, 6) (from 3.5, 5.5, 5.5): every reference cut shows oedema and core; the
    # prediction (x = 4..5 only) shows oedema in the axial and coronal cuts, nothing sagittally
    slots = [set((np.unique(np.asarray(im)) // GREY_LEVELS).tolist()) for im in decoded]
    assert slots[3:] == [{0, 1, 2}] * 3
    assert slots[:3] == [{0, 2}, {0, 2}, {0}]


def test_evaluate_writes_the_report_with_its_own_scores(scored_folder):
    pred_dir, cases = scored_folder
    result = evaluate_masks(pred_dir, cases)
    assert result.report == pred_dir / "report.html"
    rows = table_rows(result.report.read_text())
    assert [r[0] for r in rows] == ["shifted", "half", "perfect"]
    wt = {c["case_id"]: c["WT"]["dice"] for c in result.cases}
    assert wt["shifted"] == pytest.approx(0.5) and wt["half"] == pytest.approx(2 / 3)
    (pred_dir / "report.html").unlink()
    assert evaluate_masks(pred_dir, cases[:1], report=False).report is None
    assert not (pred_dir / "report.html").exists()


def test_prediction_only_report(scored_folder):
    pred_dir, cases = scored_folder
    for case in cases:
        case.labels = None
    html = write_segmentation_report(pred_dir, cases, pred_dir / "p.html").read_text()
    assert_self_contained(html)
    assert 'id="prediction-only"' in html and "No reference masks" in html
    assert "Dice" not in html.split('<table id="scores">')[1].split("</table>")[0]
    assert 'id="mean"' not in html and "distribution of" not in html
    assert [r[0] for r in table_rows(html)] == ["perfect", "shifted", "half"]  # source order
    for case in cases:
        kinds = [cls for cls, _ in images(case_section(html, case.case_id))]
        assert kinds == ["overlay prediction"] * 3
    assert "centre of mass of the predicted WT" in html


def test_status_records_give_failed_cases_their_error(scored_folder):
    pred_dir, cases = scored_folder
    (pred_dir / "half.nii.gz").unlink()
    records = [{"case_id": "half", "status": "failed", "error": "BadVolumeError: all zero"}]
    html = write_segmentation_report(pred_dir, cases, scores=records).read_text()
    assert table_rows(html)[0][:2] == ["half", "failed: BadVolumeError: all zero"]


def test_centre_and_background_rules():
    ref = np.zeros((5, 6, 7), np.uint8)
    ref[1:4, 2, 3] = 2
    pred = np.zeros_like(ref)
    pred[4, 5, 6] = 1
    assert tumour_centre(ref, pred, ref.shape) == ((2, 2, 3), "centre of mass of the reference WT")
    assert tumour_centre(np.zeros_like(ref), pred, ref.shape)[0] == (4, 5, 6)
    assert tumour_centre(None, np.zeros_like(ref), ref.shape)[0] == (2, 3, 3)
    case = block_case("c", 0)
    assert background_modality(case) == "flair"
    del case.images["flair"]
    assert background_modality(case) == "t1gd"


def test_cli_evaluate_report_options(scored_folder, tmp_path):
    from radsurv.cli import app
    from radsurv.data.manifest import build_manifest, write_manifest
    from radsurv.data.nifti import write_nifti_case

    pred_dir, cases = scored_folder
    write_nifti_case(cases[1], tmp_path / "data")  # one case keeps the three runs quick
    manifest = write_manifest(
        build_manifest(tmp_path / "data", relative_to=tmp_path, checksum=False),
        tmp_path / "m.csv",
    )
    runner = CliRunner()
    base = ["segment", "evaluate", "--pred", str(pred_dir), "--manifest", str(manifest)]
    res = runner.invoke(app, [*base, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (pred_dir / "report.html").is_file() and "report.html" in res.output
    assert [r[0] for r in table_rows((pred_dir / "report.html").read_text())] == ["shifted"]
    (pred_dir / "report.html").unlink()
    res = runner.invoke(app, [*base, "--report", str(tmp_path / "x.html")])
    assert res.exit_code == 0 and (tmp_path / "x.html").is_file()
    res = runner.invoke(app, [*base, "--no-report"])
    assert res.exit_code == 0 and not (pred_dir / "report.html").exists()
    res = runner.invoke(app, [*base, "--no-report", "--report", str(tmp_path / "y.html")])
    assert res.exit_code == 2 and "not both" in res.output


@pytest.mark.skipif(
    find_chromium() is None, reason="no Chromium on PATH (apt-get install chromium)"
)
def test_report_opens_in_a_real_browser(scored_folder, screenshot_dir):
    from radsurv.evaluation.browser import check_html_in_browser

    pred_dir, cases = scored_folder
    out = evaluate_masks(pred_dir, [*cases, block_case("no_mask", 9)]).report
    visible = (
        "(() => {{ const e = document.querySelector('{}'); if (!e) return false; "
        "const r = e.getBoundingClientRect(); const s = getComputedStyle(e); "
        "return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && "
        "s.display !== 'none'; }})()"
    )
    check = check_html_in_browser(
        out,
        screenshot_dir / "segmentation_report.png",
        evaluate={
            "legend": visible.format("#legend"),
            "table": visible.format("#scores"),
            "rows": "Array.from(document.querySelectorAll('#scores tbody tr'))"
            ".map(r => r.cells[0].textContent.trim())",
            "overlays": "document.querySelectorAll('img.overlay').length",
        },
    )
    assert not check.console_errors, check.console_errors
    assert check.images == check.images_loaded == 3 * 6 + 1
    assert check.values["legend"] and check.values["table"]
    assert check.values["rows"] == ["no_mask", "shifted", "half", "perfect"]
    assert check.values["overlays"] == 18
