"""detseg: detection and segmentation, from sliding windows to Mask R-CNN, in one API.

    import detseg
    run_dir = detseg.train("fcn", data="shapes", epochs=5)
    model = detseg.load(run_dir / "best.pt")
    results = model.predict("street.png")
    results[0].save("street_pred.png")
"""

from detseg.structures import IGNORE_INDEX, ModelOutput, Problem

__version__ = "0.1.0"


def __getattr__(name):  # lazy: `import detseg` stays cheap for the CLI's --help
    if name in ("train", "evaluate", "load", "predict"):
        from detseg import api

        return getattr(api, name)
    raise AttributeError(f"module 'detseg' has no attribute {name!r}")


__all__ = ["IGNORE_INDEX", "ModelOutput", "Problem", "train", "evaluate", "load", "predict"]
