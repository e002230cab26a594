"""The same tasks on a real Dask LocalCluster (loopback) give the same table as a local run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from radsurv.data.case import Case
from radsurv.features.runner import extract_features


@pytest.mark.slow
def test_dask_local_cluster_equals_local_run(
    tmp_path: Path, phantoms: list[Case], fast_params: Path
) -> None:
    from distributed import LocalCluster

    kw = {"params": str(fast_params), "regions": ["ET", "TC", "WT"]}
    local = extract_features(phantoms[:3], jobs=1, **kw)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp",
        scheduler_kwargs={"host": "127.0.0.1"},  # loopback
        dashboard_address=None,
    ) as cluster:
        on_dask = extract_features(
            phantoms[:3], dask=cluster.scheduler_address, output=tmp_path / "d.csv", **kw
        )
    assert on_dask.provenance["backend"] == "dask"
    assert on_dask.status["status"].tolist() == ["ok"] * 3
    pd.testing.assert_frame_equal(on_dask.features, local.features)
