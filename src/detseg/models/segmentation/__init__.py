"""Semantic segmentation models (lecture section 1): a class for every pixel.

- :mod:`~detseg.models.segmentation.semantic` -- the shared base (:class:`SemanticModel`) and loss;
- :mod:`~detseg.models.segmentation.sliding_window` -- classify a crop around every pixel;
- :mod:`~detseg.models.segmentation.fcn_same_res` -- convolutions at full resolution throughout;
- :mod:`~detseg.models.segmentation.fcn` -- downsample then upsample (every unpooling and
  transpose-convolution kind), Long et al. 2015;
- :mod:`~detseg.models.segmentation.fcn_skips` -- FCN-32s / 16s / 8s with skip connections;
- :mod:`~detseg.models.segmentation.segnet` -- SegNet's max-unpooling decoder, Badrinarayanan et al. 2017;
- :mod:`~detseg.models.segmentation.deeplab` -- dilated convolutions + dense CRF, Chen et al. 2015.
"""
