"""File formats -> :class:`~radsurv.data.case.Case`: Kaggle HDF5 pack, NIfTI folders, cache,
label conventions, manifest and the synthetic phantom cohort."""

from radsurv.data.case import Case

__all__ = ["Case"]
