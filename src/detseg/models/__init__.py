"""Models: the shared core plus one folder per task family.

- :mod:`~detseg.models.base` -- the protocol every model follows (``model(images, targets)``);
- :mod:`~detseg.models.backbones` -- feature extractors declaring channels and strides;
- :mod:`~detseg.models.transform` -- resize, normalise, pad, and map predictions back;
- :mod:`~detseg.models.zoo` -- the one explicit dict of builders behind every CLI name;
- :mod:`~detseg.models.segmentation` -- semantic segmentation (sliding window, FCNs, SegNet, DeepLab);
- :mod:`~detseg.models.localization` -- classification + localization, pose;
- :mod:`~detseg.models.detection` -- detection parts and the region-based detectors.
"""
