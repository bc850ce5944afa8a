"""Checkpoints: written atomically, read with ``weights_only=True``, self-describing.

A checkpoint is a plain dict of tensors and primitives (no pickled classes), so loading it never
runs arbitrary code. It stores the zoo builder name and its arguments: ``load_model(path)`` rebuilds
the model with no other file. It records the detseg version that wrote it: a file of a newer
format is refused, naming both versions; one of a newer detseg version of the same format loads
with a warning naming both (an option it uses may be unknown here).
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from detseg.io import atomic_path

FORMAT = "detseg-checkpoint-1"
FORMAT_PREFIX, FORMAT_NUMBER = FORMAT.rsplit("-", 1)


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt or not a detseg checkpoint."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` through a temporary file and a rename (never half a file).

    A write that fails midway (a full disk, a quota, an exception inside ``torch.save``) removes
    the temporary file and leaves the previous ``path`` as it was, still loadable.

    Raises:
        OSError: naming ``path``, when the file system refuses the write.
    """
    from detseg import __version__

    state = {"format": FORMAT, **state, "detseg_version": __version__}  # the writer, for newer-file checks
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as e:
        raise OSError(e.errno, f"{path}: checkpoint: cannot write ({e.strerror or e}); "
                               "the previous checkpoint is kept") from e


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a detseg checkpoint safely (``weights_only=True``).

    Raises:
        CheckpointError: naming the file, when it is missing, truncated or of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint: file not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only's unpickler stops at the first global (class, function) or opcode outside
        # tensors and plain values, before anything is called: nothing in the file ran.
        raise CheckpointError(
            f"{path}: checkpoint: refused by the safe loader (weights_only=True): the file holds "
            f"pickled Python objects, which could run code when loaded ({_unpickler_reason(e)}); "
            "nothing in it was run. detseg checkpoints hold only tensors and plain values; load "
            "this file with torch.load(..., weights_only=False) only if you trust where it came from."
        ) from None
    except Exception as e:  # torch raises many types for truncated/garbage files
        raise CheckpointError(f"{path}: checkpoint: cannot be read ({type(e).__name__}: {e})") from None
    if isinstance(state, dict):
        _check_version(path, state)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint: not a detseg checkpoint (no '{FORMAT}' format tag); "
            "plain state_dicts can be given to a model builder as weights=PATH instead"
        )
    return state


def _version_tuple(text: str) -> tuple[int, ...]:
    """``"0.12.3rc1"`` -> ``(0, 12, 3)`` (the leading numbers; release suffixes do not count)."""
    m = re.match(r"\d+(?:\.\d+)*", text.strip())
    return tuple(int(x) for x in m.group(0).split(".")) if m else ()


def _check_version(path: Path, state: dict[str, Any]) -> None:
    """Refuse a checkpoint of a newer format; warn on one written by a newer detseg."""
    from detseg import __version__

    written = str(state.get("detseg_version", "unknown"))
    fmt = state.get("format")
    if isinstance(fmt, str) and fmt.startswith(FORMAT_PREFIX + "-") and fmt != FORMAT:
        number = fmt[len(FORMAT_PREFIX) + 1:]
        if number.isdigit() and int(number) > int(FORMAT_NUMBER):
            raise CheckpointError(
                f"{path}: checkpoint: format {fmt!r} was written by a newer detseg ({written}); "
                f"this detseg {__version__} reads {FORMAT!r}: upgrade detseg to load it")
    if _version_tuple(written)[:2] > _version_tuple(__version__)[:2]:
        warnings.warn(f"{path}: checkpoint written by detseg {written}, newer than this detseg "
                      f"{__version__}: it may use options this version does not know", stacklevel=3)


def _unpickler_reason(e: Exception) -> str:
    """The one informative line of torch's long weights_only message (``Unsupported global: ...``)."""
    text = str(e)
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [l.strip() for l in (rest if found else text).splitlines() if l.strip()]
    return lines[0][:300] if lines else type(e).__name__


def model_from_checkpoint(state: dict[str, Any], **overrides: Any):
    """Rebuild the model recorded in a loaded checkpoint and load its weights.

    ``overrides`` replace builder options that do not change the weights (e.g. ``crf=True`` for
    DeepLab, ``mode="window"`` for the sliding-window segmenter); the weights must still fit.
    """
    from detseg.models.zoo import build_model

    args = {**state["builder_args"], **overrides}
    # Pretrained weights were already merged into the saved state_dict; never re-read them.
    if "weights" in args:
        args["weights"] = None
    model = build_model(state["builder"], **args)
    model.load_state_dict(state["model"])
    model.dataset_info = state.get("dataset_info", {})
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu", **overrides: Any):
    """``detseg.load``: the model of a checkpoint, in eval mode, on ``device`` (see overrides above)."""
    state = load_checkpoint(path)
    try:
        model = model_from_checkpoint(state, **overrides)
    except RuntimeError as e:  # load_state_dict: the override changed the architecture
        raise CheckpointError(f"{path}: options {overrides} do not fit the saved weights ({e})") from None
    return model.to(device).eval()
