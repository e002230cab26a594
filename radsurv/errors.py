"""The radsurv error hierarchy.

Every error a user can cause derives from :class:`RadsurvError`. A message says what is wrong,
where (file, case, row, column) and what to do about it. Modules define narrower subclasses of
these bases next to the code that raises them.
"""


class RadsurvError(Exception):
    """Base class of every error radsurv raises on purpose."""


class DataError(RadsurvError):
    """An image, mask or slice file is missing, unreadable or inconsistent."""


class LabelError(DataError):
    """A label mask holds values that its label convention does not define."""


class ManifestError(RadsurvError):
    """A manifest (sample sheet) is missing columns, rows or files."""


class ClinicalTableError(RadsurvError):
    """A clinical table (survival, grades, endpoint labels) has bad rows or columns."""


class ConfigError(RadsurvError):
    """An option, preset or parameter file is invalid."""


class FeatureExtractionError(RadsurvError):
    """Radiomic feature extraction failed for a case."""


class SegmentationError(RadsurvError):
    """Training, loading or applying a segmentation model failed."""


class ModelError(RadsurvError):
    """A survival model or classifier could not be fitted or evaluated."""
