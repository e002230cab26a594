"""One case-source type everywhere: iter_cases, the segmentation loaders and the feature
runner's case references all hand out radsurv.data.sources.CaseSource."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from radsurv.data.case import Case
from radsurv.data.hdf5 import write_kaggle_volume
from radsurv.data.manifest import Manifest, build_manifest, write_manifest
from radsurv.data.sources import CaseSource, iter_cases
from radsurv.errors import SegmentationError
from radsurv.segmentation.sources import CaseLoader, case_loaders

SHAPE = (3, 6, 6)


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    rng = np.random.default_rng(5)
    for volume in (1, 2):
        images = {m: rng.normal(size=SHAPE) for m in ("flair", "t1", "t1gd", "t2")}
        labels = np.zeros(SHAPE, dtype=np.uint8)
        labels[1, 1:3, 1:3] = 2
        write_kaggle_volume(Case("x", images, labels), root / "data", volume)
    df = build_manifest(root, relative_to=root, find_tables=False, checksum=False)
    return write_manifest(df, root / "m.csv")


def test_every_source_kind_gives_case_sources(manifest_path: Path) -> None:
    manifest = Manifest.read(manifest_path)
    ids = ["BraTS20_Training_001", "BraTS20_Training_002"]
    for source in (manifest_path, str(manifest_path), manifest, manifest_path.parent):
        sources = list(iter_cases(source))
        assert [s.case_id for s in sources] == ids, source
        assert all(isinstance(s, CaseSource) for s in sources)
        case = sources[1].load()
        np.testing.assert_array_equal(case.images["t2"], manifest.load_case(ids[1]).images["t2"])


def test_segmentation_case_loaders_keep_their_contract(manifest_path: Path) -> None:
    assert CaseLoader is CaseSource
    loaders = case_loaders(manifest_path)
    assert [ld.case_id for ld in loaders] == ["BraTS20_Training_001", "BraTS20_Training_002"]
    case = loaders[0].load()
    assert case.case_id == "BraTS20_Training_001" and case.labels is not None
    pair = case_loaders([("a", lambda: case), CaseLoader("b", lambda: case), case])
    assert [ld.case_id for ld in pair] == ["a", "b", "BraTS20_Training_001"]
    with pytest.raises(SegmentationError, match="appear more than once"):
        case_loaders([case, case])
    with pytest.raises(SegmentationError, match="cannot use int as a case"):
        case_loaders([1])
    with pytest.raises(SegmentationError, match="cannot read cases from a int"):
        case_loaders(3)


def test_feature_runner_refs_hold_a_picklable_case_source(manifest_path: Path) -> None:
    from radsurv.features.runner import case_refs, load_ref

    refs, common = case_refs(manifest_path)
    assert common == ["flair", "t1", "t1gd", "t2"]
    assert all(isinstance(r.source, CaseSource) for r in refs)
    case, labels = load_ref(pickle.loads(pickle.dumps(refs[1])))
    assert labels is None
    expected = Manifest.read(manifest_path).load_case(refs[1].case_id)
    np.testing.assert_array_equal(case.labels, expected.labels)
