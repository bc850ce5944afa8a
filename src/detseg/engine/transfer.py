"""Transfer learning: start a run from another run's weights, freeze the first backbone stages.

``detseg train MODEL --weights FILE [--freeze-backbone N]`` (``TrainConfig.weights`` /
``freeze_backbone``), the lecture's "transfer learning is hot: less data, same performance"
(Yosinski et al., "How transferable are features in deep neural networks?", NeurIPS 2014;
Girshick et al., R-CNN, CVPR 2014, sec. 2.3: ImageNet pre-training, then fine-tuning on VOC with
a new (N+1)-way classifier).

:func:`load_transfer` reads ``FILE`` with ``torch.load(weights_only=True)``: a detseg checkpoint
(its ``model``), a plain ``state_dict`` (or one wrapped under ``"state_dict"``), or a torchvision
Faster / Mask / Keypoint R-CNN ``state_dict`` (renamed by
:mod:`detseg.models.detection.torchvision_compat`, whose complete mapping the R-CNN builders use);
a torchvision weights enum name (``ResNet18_Weights.IMAGENET1K_V1``) downloads, as before. Every
tensor whose name *and* shape match the freshly built model is copied in. The rest is reported:

- ``skipped``: tensors of the file not loaded, with the reason -- ``missing in model`` (no tensor
  of that name), or ``shape mismatch`` with both shapes (e.g. the class-dependent predictors
  ``box_head.cls_score.*`` of a checkpoint trained for another class count);
- ``reinitialised``: tensors of the model left at their fresh initialisation, with the reason
  (``shape mismatch`` or ``missing in file``);
- ``loaded``: the names copied; the trainer adds ``refitted``, those of them a model's
  data-dependent priors then replaced for the new data (YOLO's k-means anchors, ``fit_priors``).

Names are matched as they are, or -- when that matches more tensors -- after replacing one leading
prefix of the file's names by one of the model's (a DDP ``module.`` prefix; a backbone-only
``state_dict`` such as torchvision's ResNet-18 into ``backbone.``; another detector's
``backbone.body.`` into ``backbone.``). A file that matches nothing is an error naming it.

:func:`freeze_backbone` turns off ``requires_grad`` for the first ``N`` stages of the model's
backbone (stages per family: :func:`detseg.models.backbones.backbone_stages`) and returns their
batch-norm layers, which the trainer keeps in eval mode (running statistics frozen too, as
torchvision's ``FrozenBatchNorm2d`` does for pretrained detection backbones).
:func:`transfer_report` is what ``transfer.json`` holds; :func:`format_transfer` the printed summary.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

MISSING_IN_MODEL = "missing in model"
MISSING_IN_FILE = "missing in file"
SHAPE_MISMATCH = "shape mismatch"


@dataclass
class WeightsFile:
    """A weights file as read: its tensors and what it was (``kind``: ``detseg checkpoint``,
    ``state_dict``, ``torchvision``), with the checkpoint's builder and classes where known."""

    path: str
    state: dict[str, Tensor]
    kind: str
    builder: str | None = None
    classes: list[str] | None = None
    unmapped: list[str] = field(default_factory=list)  # torchvision keys with no detseg name


def read_weights_file(weights: str | Path) -> WeightsFile:
    """Read ``weights`` safely (``weights_only=True``); see the module docstring.

    Raises:
        FileNotFoundError: no such file (and not a torchvision enum name);
        ValueError: naming the file, when it cannot be read safely or holds no tensors.
    """
    from detseg.models.backbones import _ENUM_NAME, read_state_dict

    path = Path(weights)
    if not path.exists() and _ENUM_NAME.match(str(weights)):
        return WeightsFile(str(weights), read_state_dict(str(weights)), "torchvision weights enum")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: --weights: file not found (a detseg checkpoint, e.g. "
                                "runs/MODEL/train1/best.pt, or a state_dict file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: --weights: refused by the safe loader (weights_only=True): "
                         f"{str(e).splitlines()[0]}") from None
    except Exception as e:  # torch raises many types for truncated or foreign files
        raise ValueError(f"{path}: --weights: cannot be read ({type(e).__name__}: {e})") from None
    kind, builder, classes = "state_dict", None, None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        if "builder" in obj:
            kind, builder = "detseg checkpoint", str(obj["builder"])
            classes = list(obj.get("classes") or obj.get("builder_args", {}).get("classes") or []) or None
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: --weights: not a checkpoint or state_dict (a {type(obj).__name__})")
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise ValueError(f"{path}: --weights: no tensors in this file")
    out = WeightsFile(str(path), state, kind, builder, classes)
    from detseg.models.detection.torchvision_compat import convert_state_dict, is_torchvision_state_dict

    if kind == "state_dict" and is_torchvision_state_dict(state):
        out.state, out.unmapped = convert_state_dict(state)
        out.kind = "torchvision"
    return out


def _prefix_pairs(file_keys: list[str], own_keys: list[str]) -> dict[tuple[str, str], int]:
    """``{(file prefix, model prefix): names matched}`` over every split of every name."""
    by_suffix: dict[str, list[str]] = {}
    for k in own_keys:
        parts = k.split(".")
        for j in range(len(parts)):
            by_suffix.setdefault(".".join(parts[j:]), []).append(".".join(parts[:j]) + ("." if j else ""))
    counts: dict[tuple[str, str], int] = {}
    for k in file_keys:
        parts = k.split(".")
        for i in range(len(parts)):
            strip = ".".join(parts[:i]) + ("." if i else "")
            for add in by_suffix.get(".".join(parts[i:]), ()):
                counts[(strip, add)] = counts.get((strip, add), 0) + 1
    return counts


def rename_to_model(state: dict[str, Tensor], own_keys: list[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``(state renamed into the model's names, {model name: file name})``: names as they are, or
    with the one prefix replacement that matches the most names (module docstring)."""
    own = set(own_keys)
    direct = sum(k in own for k in state)
    if direct < len(state):
        counts = _prefix_pairs(list(state), own_keys)
        (strip, add), n = max(counts.items(), key=lambda kv: (kv[1], -len(kv[0][0]) - len(kv[0][1])),
                              default=(("", ""), 0))
        if n > direct:
            renamed, origin = {}, {}
            for k, v in state.items():
                name = add + k[len(strip):] if k.startswith(strip) else k
                renamed[name], origin[name] = v, k
            return renamed, origin
    return dict(state), {k: k for k in state}


def load_transfer(model: nn.Module, weights: str | Path) -> dict[str, Any]:
    """Copy the tensors of ``weights`` whose name and shape match ``model``; the report
    (``source``, ``kind``, ``loaded``, ``skipped``, ``reinitialised``; module docstring).

    Raises:
        ValueError: when no tensor of the file matches the model (the wrong file).
    """
    src = read_weights_file(weights)
    own = model.state_dict()
    renamed, origin = rename_to_model(src.state, list(own))
    loaded: list[str] = []
    skipped: list[dict[str, Any]] = [{"name": k, "reason": MISSING_IN_MODEL, "note": "no detseg name"}
                                     for k in src.unmapped]
    mismatched: dict[str, dict[str, Any]] = {}
    for name, value in renamed.items():
        if name not in own:
            skipped.append({"name": origin[name], "reason": MISSING_IN_MODEL})
        elif value.shape != own[name].shape:
            entry = {"name": origin[name], "reason": SHAPE_MISMATCH, "file_shape": list(value.shape),
                     "model_shape": list(own[name].shape)}
            if origin[name] != name:
                entry["model_name"] = name
            skipped.append(entry)
            mismatched[name] = entry
        else:
            loaded.append(name)
    if not loaded:
        raise ValueError(f"{src.path}: --weights: no tensor matches this model by name and shape "
                         f"(the model's first names: {list(own)[:3]}; the file's: {list(src.state)[:3]})")
    with torch.no_grad():
        for name in loaded:
            own[name].copy_(renamed[name])
    chosen = set(loaded)
    reinit = []
    for name, value in own.items():
        if name in chosen:
            continue
        if name in mismatched:
            reinit.append({"name": name, "reason": SHAPE_MISMATCH, "file_shape": mismatched[name]["file_shape"],
                           "model_shape": list(value.shape)})
        else:
            reinit.append({"name": name, "reason": MISSING_IN_FILE})
    report: dict[str, Any] = {"source": src.path, "kind": src.kind, "loaded": loaded,
                              "skipped": skipped, "reinitialised": reinit}
    if src.builder is not None:
        report["source_builder"] = src.builder
    if src.classes is not None:
        report["source_classes"] = src.classes
    return report


# -- freezing ------------------------------------------------------------------------------------
@dataclass
class FrozenStages:
    """What :func:`freeze_backbone` froze: stage names, parameter names, and the batch-norm layers
    (with their names) the trainer keeps in eval mode."""

    backbone: str
    stages: list[str]
    available: list[str]
    parameters: list[str]
    batch_norms: list[nn.Module]
    batch_norm_names: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "stages": self.stages, "stages_available": self.available,
                "parameters": self.parameters, "batch_norms": self.batch_norm_names}


def find_backbone(model: nn.Module, who: str = "model") -> tuple[str, nn.Module]:
    """``(attribute path, module)`` of the model's backbone: ``model.backbone``, or the CNN that
    R-CNN / sliding-window detection run on warped crops (``roi_extractor.cnn``)."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module):
        return "backbone", backbone
    cnn = getattr(getattr(model, "roi_extractor", None), "cnn", None)
    if isinstance(cnn, nn.Module):
        return "roi_extractor.cnn", cnn
    raise ValueError(f"{who}: --freeze-backbone: this model has no backbone to freeze")


def freeze_backbone(model: nn.Module, n: int | bool, who: str = "model") -> FrozenStages:
    """Freeze the first ``n`` stages of ``model``'s backbone (``requires_grad=False``).

    ``n = 0`` freezes nothing; ``True`` (configs written before stages were counted) freezes all.

    Raises:
        ValueError: a model without a backbone, ``n < 0``, or ``n`` above the stage count.
    """
    from detseg.models.backbones import backbone_stages

    if not isinstance(n, (bool, int)) or (not isinstance(n, bool) and n < 0):
        raise ValueError(f"{who}: --freeze-backbone: expected a number of stages >= 0, got {n!r}")
    where, backbone = find_backbone(model, who)
    stages = backbone_stages(backbone)
    names = [s for s, _ in stages]
    count = len(stages) if n is True else int(n)
    if count > len(stages):
        raise ValueError(f"{who}: --freeze-backbone {count}: its {type(backbone).__name__} backbone has "
                         f"{len(stages)} stages ({', '.join(names)}); give 0..{len(stages)}")
    param_names = {id(p): k for k, p in model.named_parameters()}
    module_names = {id(m): k for k, m in model.named_modules()}
    frozen, bns, bn_names = [], [], []
    for _, modules in stages[:count]:
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(False)
                if id(p) in param_names:
                    frozen.append(param_names[id(p)])
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    bns.append(m)
                    bn_names.append(module_names.get(id(m), type(m).__name__))
    return FrozenStages(where, names[:count], names, frozen, bns, bn_names)


def keep_frozen_eval(frozen: FrozenStages | None) -> None:
    """Put the frozen stages' batch norms back in eval mode (after ``model.train()``): their
    running statistics stay those of the pretrained weights."""
    if frozen is not None:
        for m in frozen.batch_norms:
            m.eval()


# -- the report ------------------------------------------------------------------------------------
def transfer_report(loaded: dict[str, Any] | None, frozen: FrozenStages | None,
                    model: nn.Module) -> dict[str, Any]:
    """The ``transfer.json`` content: the load report, the frozen stages, and counts."""
    report: dict[str, Any] = dict(loaded) if loaded else {"source": None}
    report["frozen"] = frozen.as_dict() if frozen is not None else None
    n_params = dict(model.named_parameters())
    frozen_params = frozen.parameters if frozen is not None else []
    report["counts"] = {
        "loaded": len(report.get("loaded", [])), "skipped": len(report.get("skipped", [])),
        "reinitialised": len(report.get("reinitialised", [])), "frozen": len(frozen_params),
        "frozen_elements": sum(n_params[k].numel() for k in frozen_params if k in n_params),
        "trainable_elements": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    return report


def format_transfer(report: dict[str, Any], show: int = 6) -> str:
    """A few lines for the terminal: counts, then the first re-initialised / skipped names."""
    c = report["counts"]
    lines = []
    if report.get("source"):
        lines.append(f"weights: {report['source']} ({report['kind']}"
                     + (f" of {report['source_builder']}" if report.get("source_builder") else "")
                     + f"): loaded {c['loaded']} tensors, re-initialised {c['reinitialised']}, "
                     f"skipped {c['skipped']} of the file")
        # A shape mismatch is both skipped (the file's tensor) and re-initialised (the model's):
        # print it once, under re-initialised.
        missing = [e for e in report["skipped"] if e["reason"] != SHAPE_MISMATCH]
        for items, title in ((report["reinitialised"], "re-initialised"), (missing, "skipped")):
            for e in items[:show]:
                shapes = (f" (file {tuple(e['file_shape'])} vs model {tuple(e['model_shape'])})"
                          if e["reason"] == SHAPE_MISMATCH else "")
                lines.append(f"  {title}: {e['name']}: {e['reason']}{shapes}")
            if len(items) > show:
                lines.append(f"  ... {len(items) - show} more {title} (transfer.json lists them all)")
        if report.get("refitted"):
            lines.append(f"  refitted to this data after loading: {', '.join(report['refitted'])}")
    fr = report.get("frozen")
    if fr:
        lines.append(f"frozen: {len(fr['stages'])} of {len(fr['stages_available'])} stages of the "
                     f"{fr['backbone']} ({', '.join(fr['stages']) or 'none'}): {c['frozen']} parameter "
                     f"tensors, {c['frozen_elements']:,} values; {c['trainable_elements']:,} trainable")
    return "\n".join(lines)
