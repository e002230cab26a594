"""File formats -> :class:`~radsurv.data.case.Case`: Kaggle HDF5 pack, NIfTI folders, cache,
label conventions, manifest and the synthetic phantom cohort.

Every format is one module behind one interface (:mod:`radsurv.data.formats`: detect, list,
read, validate, write); :func:`radsurv.data.sources.iter_cases` is the one way to iterate the
cases of a dataset, a manifest or a list of cases."""

from radsurv.data.case import Case

__all__ = ["Case"]
