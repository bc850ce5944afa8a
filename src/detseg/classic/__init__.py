"""Classic (learning-free) segmentation baselines: mean-shift regions (Comaniciu & Meer 2002)."""

from detseg.classic.meanshift import (
    draw_regions,
    evaluate_meanshift,
    majority_label_map,
    meanshift_segment,
    rgb_to_lab,
)

__all__ = ["draw_regions", "evaluate_meanshift", "majority_label_map", "meanshift_segment",
           "rgb_to_lab"]
