"""Post-processing of model outputs that is not part of a network: the dense CRF of DeepLab.

``dense_crf`` needs the optional ``pydensecrf2`` package (``pip install detseg[crf]``); importing
this package never needs it.
"""

from detseg.postprocess.crf import CRF_INSTALL_HINT, crf_available, dense_crf

__all__ = ["CRF_INSTALL_HINT", "crf_available", "dense_crf"]
