"""radsurv: radiomics and survival prediction on multimodal brain-tumour MRI (BraTS).

``import radsurv`` stays light: torch/MONAI load only inside :mod:`radsurv.segmentation`,
PyRadiomics only inside :mod:`radsurv.features`.
"""

from radsurv.errors import RadsurvError

__version__ = "0.1.0"
__all__ = ["RadsurvError", "__version__"]
