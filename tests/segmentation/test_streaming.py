"""--loader stream / mmap: samples read on demand equal the in-memory ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from radsurv.cli import app
from radsurv.data.hdf5 import read_volume, scan_pack, write_kaggle_volume
from radsurv.data.manifest import build_manifest, write_manifest
from radsurv.errors import ConfigError
from radsurv.segmentation import load_model, train_segmentation
from radsurv.segmentation.datasets import RandomPatchDataset, prepare_volume
from radsurv.segmentation.streaming import StreamingSliceDataset, map_volume, stream_volume
from radsurv.segmentation.train import EpochSampler, _EpochStream

from .conftest import phantom, tiny_config

FAST = {"batch_size": 4, "steps_per_epoch": 2, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """Three phantom volumes written as a real Kaggle pack (one HDF5 file per slice)."""
    root = tmp_path_factory.mktemp("pack")
    folder = root / "BraTS2020_training_data" / "content" / "data"
    for v in (1, 2, 3):
        write_kaggle_volume(phantom(v), folder, v)
    return root, folder


@pytest.fixture(scope="module")
def pack_cases(pack):
    return [read_volume(pv) for _, pv in sorted(scan_pack(pack[1]).items())]


@pytest.mark.parametrize("modalities", [["flair", "t1", "t1gd", "t2"], ["t2", "flair"]])
def test_streamed_slices_equal_the_prepared_volume(pack_cases, modalities):
    config = tiny_config(modalities)
    for case in pack_cases:
        mem = prepare_volume(case, config, seed=1)
        st = stream_volume(case, config, seed=1)
        np.testing.assert_array_equal(st.tumour_voxels, mem.tumour_voxels)
        np.testing.assert_array_equal(st.head_voxels, mem.head_voxels)
        assert (st.box[0][1] - st.box[0][0]) == mem.image.shape[1]
        for z in range(mem.image.shape[1]):
            x, regions = st.read_slice(z)
            assert x.shape == mem.image[:, z].shape and x.dtype == np.float32
            # the memory loader stores float16; the streamed slice is the float32 it rounds
            np.testing.assert_array_equal(x.astype(np.float16), mem.image[:, z])
            np.testing.assert_array_equal(regions, mem.regions[:, z])


@pytest.mark.parametrize("spatial_aug", [0.0, 1.0])
def test_streamed_samples_equal_in_memory_samples(pack_cases, spatial_aug):
    config = tiny_config(["flair", "t1gd", "t2"])
    config.modality_dropout = 0.3
    config.spatial_aug = spatial_aug  # rotated samples read a larger crop from the slice files
    mem = RandomPatchDataset([prepare_volume(c, config) for c in pack_cases], config, 32, seed=4)
    st = StreamingSliceDataset([stream_volume(c, config) for c in pack_cases], config, 32, seed=4)
    for epoch in (0, 3):
        mem.set_epoch(epoch)
        st.set_epoch(epoch)
        for i in range(32):
            (xm, ym), (xs, ys) = mem[i], st[i]
            assert torch.equal(ym, ys)
            # float16 storage of the memory loader, then the x0.9-1.1 intensity scale
            torch.testing.assert_close(xs, xm, atol=4e-3, rtol=2e-3)


def test_epoch_content_does_not_depend_on_the_worker_count(pack_cases):
    config = tiny_config(["flair", "t1gd"])
    vols = [stream_volume(c, config) for c in pack_cases]
    batches = {}
    for workers in (0, 2):
        ds = _EpochStream(vols, config, 12, seed=9)
        sampler = EpochSampler(len(ds))
        sampler.epoch = 2
        loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=workers)
        batches[workers] = list(loader)
    assert len(batches[0]) == 3
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2], strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)


def test_training_streams_a_pack_manifest(pack, tmp_path):
    root, folder = pack
    manifest = tmp_path / "data_manifest.csv"
    write_manifest(build_manifest(folder, relative_to=root, checksum=False), manifest)
    out = tmp_path / "m.pt"
    result = train_segmentation(
        manifest,
        out,
        config=tiny_config(["flair", "t1gd"]),
        epochs=1,
        val_fraction=0.34,
        loader="stream",
        num_workers=2,
        **FAST,
    )
    assert len(result.train_cases) == 2 and len(result.val_cases) == 1
    assert np.isfinite(result.history[0]["val_dice_WT"])
    assert load_model(out, device="cpu").config.modalities == ["flair", "t1gd"]
    # the CLI: a streamed 2-fold ensemble
    args = "--epochs 1 --steps-per-epoch 2 --batch-size 2 --modalities flair,t1gd --device cpu"
    res = CliRunner().invoke(
        app,
        ["segment", "train", "-m", str(manifest), "-o", str(tmp_path / "e.pt"), "--folds", "2"]
        + ["--loader", "stream", "--progress", *args.split()],
    )
    assert res.exit_code == 0, res.output
    assert "2-fold ensemble index" in res.output
    assert torch.load(tmp_path / "e.pt", weights_only=True)["members"] == [
        "e.fold1.pt",
        "e.fold2.pt",
    ]


def test_stream_refuses_what_it_cannot_stream(tiny_cases, pack_cases, tmp_path):
    with pytest.raises(ConfigError, match="--loader memory"):
        train_segmentation(
            tiny_cases[:2], tmp_path / "m.pt", config=tiny_config(), loader="stream", **FAST
        )
    with pytest.raises(ConfigError, match="3d model needs --loader memory"):
        train_segmentation(pack_cases, tmp_path / "m.pt", dim="3d", loader="stream", **FAST)
    with pytest.raises(ConfigError, match="--loader 'disk' unknown; choose memory, stream or mmap"):
        train_segmentation(pack_cases, tmp_path / "m.pt", loader="disk", **FAST)


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_mapped_samples_equal_in_memory_samples(tiny_cases, tmp_path, dim):
    config = tiny_config(["flair", "t1gd"], dim=dim)
    mem = RandomPatchDataset([prepare_volume(c, config) for c in tiny_cases[:2]], config, 8, 2)
    mapped = [map_volume(c, config, folder=tmp_path) for c in tiny_cases[:2]]
    mm = RandomPatchDataset(mapped, config, 8, 2)
    for i in range(8):
        (xm, ym), (xs, ys) = mem[i], mm[i]
        assert torch.equal(xm, xs) and torch.equal(ym, ys)
    assert isinstance(mapped[0].image, np.memmap)


def test_parallel_loading_equals_loading_in_process(pack_cases, tiny_cases, nan_case, tmp_path):
    from radsurv.segmentation.loading import load_volumes
    from radsurv.segmentation.sources import case_loaders

    config = tiny_config(["flair", "t1gd"])
    write_kaggle_volume(nan_case, tmp_path, 9, standardise=False)  # a pack volume with NaN
    bad = ("BraTS20_Training_009", lambda: read_volume(scan_pack(tmp_path)[bad[0]]))
    cases = case_loaders([*pack_cases[:2], bad, pack_cases[2]])
    runs = [
        load_volumes(cases, None, config, None, None, None, "cpu", 0, stream_volume, workers=w)
        for w in (0, 2)
    ]
    (v0, s0, _), (v2, s2, _) = runs
    assert list(v0) == list(v2) == [c.case_id for c in pack_cases]
    assert s0 == s2 and "NaN" in s0["BraTS20_Training_009"]
    for a, b in zip(v0.values(), v2.values(), strict=True):
        assert a.files == b.files and a.box == b.box
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.head_voxels, b.head_voxels)
    with pytest.raises(ConfigError, match="--loader memory"):  # stops, even from a worker
        load_volumes(
            case_loaders(tiny_cases[:3]), None, config, None, None, None, "cpu", 0, stream_volume, 2
        )


def test_streaming_a_real_case_written_as_a_pack(shared_data, tmp_path):
    """A real TCGA glioma (int16 intensities, real head shape) through write_kaggle_volume:
    streamed slices equal the memory loader's (20 full-size slices through the tumour)."""
    from radsurv.data.case import Case
    from radsurv.data.nifti import read_nifti_case

    folder = shared_data / "brainles_tcga" / "TCGA-FG-6692"
    real = read_nifti_case(
        folder,
        modality_patterns={
            m: f"*_{s}.nii.gz"
            for m, s in zip(
                ("flair", "t1", "t1gd", "t2"), ("flair", "t1", "t1c", "t2"), strict=True
            )
        },
        seg_pattern="segmentations/fusion-mav.nii.gz",
        label_convention="brats2020",
    )
    z = int(np.argwhere(real.labels > 0)[:, 0].mean())
    slab = slice(z - 10, z + 10)
    case = Case("real", {m: a[slab] for m, a in real.images.items()}, real.labels[slab].copy())
    write_kaggle_volume(case, tmp_path, 1)
    packed = read_volume(scan_pack(tmp_path)["BraTS20_Training_001"])
    config = tiny_config(["t1gd", "flair"])
    mem = prepare_volume(packed, config, seed=0)
    st = stream_volume(packed, config, seed=0)
    assert mem.regions[2].any()  # the slab holds enhancing tumour
    for zz in range(mem.image.shape[1]):
        x, regions = st.read_slice(zz)
        np.testing.assert_array_equal(x.astype(np.float16), mem.image[:, zz])
        np.testing.assert_array_equal(regions, mem.regions[:, zz])
