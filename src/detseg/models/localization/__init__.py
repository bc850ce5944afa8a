"""Single-object localization and pose (lecture section 2): a fixed number of outputs per image.

- :mod:`~detseg.models.localization.cls_loc` -- classification + box regression, multi-task loss;
- :mod:`~detseg.models.localization.pose` -- DeepPose-style joint regression, Toshev & Szegedy 2014;
- :mod:`~detseg.models.localization.pose_heatmap` -- one heatmap per joint, Tompson et al. 2014.
"""
