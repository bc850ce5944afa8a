"""Single-person pose estimation: shared target/prediction plumbing and DeepPose regression.

Implements CS231n 2017 lecture 11's "human pose estimation as regression": DeepPose (Toshev &
Szegedy, "DeepPose: Human Pose Estimation via Deep Neural Networks", CVPR 2014,
https://arxiv.org/abs/1312.4659) -- a CNN whose pooled features regress the ``K x 2`` joint
coordinates, trained with an L2 loss summed over the joints, optionally followed by cascaded
refinement stages. The heatmap alternative ("simple baselines", Xiao et al. 2018) lives in
:mod:`detseg.models.localization.pose_heatmap` and shares the helpers below.

Conventions shared by both pose models (task ``pose``, one person per image):

- Targets: ``keypoints`` ``Tensor[N, K, 3]`` ``(x, y, visibility)`` in pixels of the original
  image (pixel indices: an integer is a pixel centre); the *first* person is the subject; an image
  with ``N == 0`` adds nothing to the loss. Only joints with visibility > 0 (labelled) enter a
  loss: the coordinates of unlabelled joints are never read (they may be placeholders or NaN).
- The image is resized to a fixed ``img_size`` square (aspect not kept), like
  :mod:`detseg.models.localization.cls_loc`. Joints are handled as coordinates *normalised* to the image,
  ``u = (x + 0.5) / W`` (pixel centres: ``u`` runs over ``[0, 1]`` across the image's extent),
  which are the same in the resized and the original image, so they map back per axis.
- Predictions: ``keypoints`` ``Tensor[1, K, 3]`` ``(x, y, score)`` in original pixels (clipped to
  the image), ``boxes`` ``Tensor[1, 4]`` xyxy (the joints' tight box, x2/y2 exclusive),
  ``scores`` ``Tensor[1]`` (mean joint score), ``labels`` ``Tensor[1]`` (the 1-based index of a
  class named ``person`` in ``classes``, else 1). Joint scores are kept above 0 so every joint is
  drawn (the drawer hides joints whose third value is 0): a pose model always places every joint.

DeepPose here:

- backbone -> deepest map -> ``pool x pool`` average grid (keeps *where* things are, as in
  :mod:`detseg.models.localization.cls_loc`) -> fully connected -> ``K x 2`` normalised coordinates, offset so
  an untrained model predicts the image centre.
- Loss ``loss_joints``: squared error summed over the x, y of every labelled joint, averaged over
  the images of the batch (DeepPose's L2 over the normalised pose vector).
- Cascade (``cascade_stages > 0``): DeepPose's stage ``s`` crops the image around each joint's
  stage ``s - 1`` estimate and regresses a displacement. The simple, cheaper version here crops
  *features* instead of pixels: a ``P x P`` grid of points spanning ``+-refine_radius`` (a fraction
  of the image side) around each previous estimate is bilinearly sampled (``grid_sample``) from the
  ``refine_feature`` map; a joint-specific regressor (a grouped 1x1 convolution: each joint has its
  own weights, as DeepPose's per-joint stage networks) maps its patch to a displacement bounded by
  ``refine_radius`` (``tanh``). Previous estimates are detached (DeepPose trains each stage on the
  fixed output of the one before); each stage adds its own ``loss_refine<s>`` of the same L2 form.
  DeepPose's extra training samples (ground truth + simulated displacements) are not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detseg.models.backbones import Backbone, build_backbone
from detseg.models.base import DetsegModel
from detseg.models.transform import ImageBatch, preprocess
from detseg.structures import ModelOutput

# Floor of a predicted joint's score, so the skeleton drawer (which hides score-0 joints) shows it.
MIN_JOINT_SCORE = 1e-3


# -- shared by both pose models ------------------------------------------------------------------
def person_label(classes: list[str]) -> int:
    """The 1-based label of the ``person`` class in ``classes`` (1 when there is none)."""
    return classes.index("person") + 1 if "person" in classes else 1


def to_normalised(xy: Tensor, size: tuple[int, int]) -> Tensor:
    """Pixel indices ``Tensor[..., 2]`` ``(x, y)`` of an ``(H, W)`` image -> ``((x + .5) / W,
    (y + .5) / H)``."""
    h, w = size
    return (xy + 0.5) / xy.new_tensor([w, h])


def from_normalised(uv: Tensor, size: tuple[int, int]) -> Tensor:
    """Inverse of :func:`to_normalised`: normalised ``Tensor[..., 2]`` -> pixel indices."""
    h, w = size
    return uv * uv.new_tensor([w, h]) - 0.5


def pose_targets(targets: list[dict[str, Tensor]], num_keypoints: int, batch_size: int,
                 who: str) -> tuple[Tensor, Tensor]:
    """The subject of each target: ``(xy Tensor[B, K, 2] pixels, labelled Tensor[B, K] bool)``.

    ``xy`` is 0 wherever a joint is not labelled (so NaN placeholders never reach a loss); an image
    without a person has no labelled joint. Both are on the CPU.

    Raises:
        ValueError: a missing ``keypoints`` field, a shape other than ``[N, K, 3]``, or a joint
            count other than the model's (the message names the target and the option to change).
    """
    if len(targets) != batch_size:
        raise ValueError(f"{who}: got {batch_size} images but {len(targets)} targets")
    xy = torch.zeros(batch_size, num_keypoints, 2)
    labelled = torch.zeros(batch_size, num_keypoints, dtype=torch.bool)
    for i, t in enumerate(targets):
        if "keypoints" not in t:
            raise ValueError(f"{who}: targets[{i}]: no 'keypoints' (pose needs Tensor[N, K, 3] "
                             "(x, y, visibility) joints)")
        kps = t["keypoints"]
        if kps.ndim != 3 or kps.shape[-1] != 3:
            raise ValueError(f"{who}: targets[{i}]['keypoints']: expected Tensor[N, K, 3], got "
                             f"{tuple(kps.shape)}")
        if len(kps) == 0:
            continue
        if kps.shape[1] != num_keypoints:
            raise ValueError(f"{who}: targets[{i}]['keypoints'] has {kps.shape[1]} joints but the "
                             f"model predicts {num_keypoints} (build it with "
                             f"num_keypoints={kps.shape[1]})")
        vis = kps[0, :, 2].cpu() > 0
        labelled[i] = vis
        xy[i] = torch.where(vis[:, None], kps[0, :, :2].detach().cpu().float(), 0.0)
    return xy, labelled


def pose_prediction(xy: Tensor, scores: Tensor, size: tuple[int, int],
                    label: int) -> dict[str, Tensor]:
    """One image's joints ``Tensor[K, 2]`` (original pixels), ``Tensor[K]`` scores -> predictions.

    Joints are clipped to the image; ``boxes`` is their tight box (x2/y2 exclusive: ``max + 1``).
    """
    h, w = size
    x = xy[:, 0].clamp(0, w - 1)
    y = xy[:, 1].clamp(0, h - 1)
    s = scores.clamp(MIN_JOINT_SCORE, 1.0)
    box = torch.stack([x.min(), y.min(), (x.max() + 1).clamp(max=w), (y.max() + 1).clamp(max=h)])
    return {"keypoints": torch.stack([x, y, s], 1)[None], "boxes": box[None],
            "scores": s.mean()[None], "labels": torch.tensor([label], device=xy.device)}


def masked_l2(pred: Tensor, goal: Tensor, labelled: Tensor) -> Tensor:
    """``Tensor[B, K, 2]`` vs ``Tensor[B, K, 2]``: squared error summed over the labelled joints'
    coordinates (``labelled`` ``Tensor[B, K]``), averaged over the ``B`` images."""
    err = ((pred - goal) ** 2).sum(-1)
    return torch.where(labelled, err, torch.zeros_like(err)).sum() / pred.shape[0]


# -- DeepPose ------------------------------------------------------------------------------------
class RegressionHead(nn.Module):
    """Pooled features -> ``Tensor[B, K, 2]`` normalised joint coordinates (centre at init)."""

    def __init__(self, in_ch: int, num_keypoints: int, pool: int = 4, hidden: int = 256,
                 dropout: float = 0.0):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * pool * pool, hidden),
                                nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, 2 * num_keypoints)
        # Small initial outputs: training starts from "every joint at the centre".
        nn.init.normal_(self.out.weight, std=0.001)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        # + 0.5: the untrained net predicts the image centre, the mean pose's neighbourhood.
        return 0.5 + self.out(self.fc(self.pool(x))).view(-1, self.num_keypoints, 2)


class RefineStage(nn.Module):
    """One cascade stage: features sampled around each joint -> a per-joint bounded displacement.

    Input: a feature map ``Tensor[B, C, h, w]`` covering the padded batch, and joints
    ``Tensor[B, K, 2]`` normalised to the padded batch. Output: refined ``Tensor[B, K, 2]``.
    """

    def __init__(self, in_ch: int, num_keypoints: int, radius: float, points: int = 3,
                 hidden: int = 64):
        super().__init__()
        self.radius, self.points, self.k = radius, points, num_keypoints
        side = torch.linspace(-radius, radius, points) if points > 1 else torch.zeros(1)
        gy, gx = torch.meshgrid(side, side, indexing="ij")
        self.register_buffer("offsets", torch.stack([gx, gy], -1).view(-1, 2), persistent=False)
        per_joint = in_ch * points * points
        # Grouped 1x1 convs = one small MLP per joint, all joints in one call.
        self.mlp = nn.Sequential(
            nn.Conv1d(num_keypoints * per_joint, num_keypoints * hidden, 1, groups=num_keypoints),
            nn.ReLU(inplace=True),
            nn.Conv1d(num_keypoints * hidden, num_keypoints * 2, 1, groups=num_keypoints))
        nn.init.zeros_(self.mlp[-1].weight)  # start as the identity: no displacement
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, feature: Tensor, joints: Tensor, image_frac: Tensor) -> Tensor:
        """``image_frac`` ``Tensor[2]``: the image's share of the padded batch per axis (x, y)."""
        b = joints.shape[0]
        # Patch points in image-normalised units, then in grid_sample's [-1, 1] padded frame.
        pts = joints[:, :, None, :] + self.offsets[None, None]  # [B, K, P*P, 2]
        grid = pts * image_frac * 2 - 1
        patch = F.grid_sample(feature, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)  # [B, C, K, P*P]
        patch = patch.permute(0, 2, 1, 3).reshape(b, -1, 1)  # [B, K*C*P*P, 1], joint-major
        delta = self.mlp(patch).view(b, self.k, 2)
        return joints + self.radius * torch.tanh(delta)


class PoseRegression(DetsegModel):
    """DeepPose joint regression with optional cascade (see the module docstring)."""

    task = "pose"

    def __init__(self, classes: list[str], backbone: Backbone, head: RegressionHead, img_size: int,
                 refine: list[RefineStage] | None = None, refine_feature: str = "c3"):
        super().__init__(classes)
        self.backbone = backbone
        self.head = head
        self.img_size = img_size
        self.feature = backbone.names[-1]
        self.refine = nn.ModuleList(refine or [])
        if self.refine and refine_feature not in backbone.channels:
            raise ValueError(f"pose_regression: refine_feature {refine_feature!r} is not a map of "
                             f"the backbone ({', '.join(backbone.names)})")
        self.refine_feature = refine_feature
        self.label = person_label(self.classes)

    @property
    def num_keypoints(self) -> int:
        return self.head.num_keypoints

    def stages(self, batch: ImageBatch) -> list[Tensor]:
        """Normalised joints ``Tensor[B, K, 2]`` after the regressor and after each refinement."""
        feats = self.backbone(batch.tensor)
        out = [self.head(feats[self.feature])]
        if self.refine:
            (h, w), (hp, wp) = batch.image_sizes[0], batch.tensor.shape[-2:]
            frac = out[0].new_tensor([w / wp, h / hp])
            for stage in self.refine:
                out.append(stage(feats[self.refine_feature], out[-1].detach(), frac))
        return out

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None,
                with_predictions: bool = False) -> ModelOutput:
        """See :class:`~detseg.models.base.DetsegModel`; losses ``loss_joints`` and, per cascade
        stage ``s``, ``loss_refine<s>``."""
        batch = preprocess(images, self.img_size, keep_aspect=False,
                           stride=self.backbone.out_stride, who="pose_regression")
        stages = self.stages(batch)
        out = ModelOutput()
        if targets is not None:
            out.losses = self.loss(stages, targets, batch.original_sizes)
        if with_predictions or not self.training:
            final = stages[-1].detach()
            out.predictions = [self.postprocess(uv, size)
                               for uv, size in zip(final, batch.original_sizes)]
        return out

    def postprocess(self, joints: Tensor, size: tuple[int, int]) -> dict[str, Tensor]:
        """One image's normalised joints ``Tensor[K, 2]`` -> predictions in original pixels."""
        return pose_prediction(from_normalised(joints, size), torch.ones_like(joints[:, 0]), size,
                               self.label)

    def loss(self, stages: list[Tensor], targets: list[dict[str, Tensor]],
             sizes: list[tuple[int, int]]) -> dict[str, Tensor]:
        """``loss_joints`` for the regressor and ``loss_refine<s>`` for cascade stage ``s``."""
        xy, labelled = pose_targets(targets, self.num_keypoints, len(sizes), "pose_regression")
        goal = torch.stack([to_normalised(p, s) for p, s in zip(xy, sizes)])
        dev = stages[0].device
        goal, labelled = goal.to(dev, stages[0].dtype), labelled.to(dev)
        names = ["loss_joints"] + [f"loss_refine{s}" for s in range(1, len(stages))]
        return {n: masked_l2(p, goal, labelled) for n, p in zip(names, stages)}


def build_pose_regression(classes: list[str], img_size: int = 128, backbone: str = "alexnet_small",
                          num_keypoints: int = 14, weights: str | None = None, pool: int = 4,
                          hidden: int = 256, dropout: float = 0.0, cascade_stages: int = 0,
                          refine_feature: str = "c3", refine_radius: float = 0.1,
                          refine_points: int = 3, refine_hidden: int = 64,
                          backbone_width: int | None = None) -> PoseRegression:
    """DeepPose: joints regressed from pooled CNN features (see the module docstring).

    Args:
        classes: class names of the data (``labels`` of predictions index them; see
            :func:`person_label`).
        img_size: the square side the network sees.
        backbone: ``alexnet_small`` (CPU-fast), ``resnet18`` or ``simple``.
        num_keypoints: ``K``, the joints per person (14 for LSP and the shapes stick figures).
        weights: pretrained backbone weights (local file or torchvision enum name).
        pool: side of the pooled feature grid (1 = global average pooling).
        hidden: width of the fully connected layer. dropout: dropout after it.
        cascade_stages: refinement stages after the regressor (0 = plain DeepPose stage 1).
        refine_feature: backbone map the stages sample (``c1..c5``).
        refine_radius: half-side of each joint's sampled patch and the largest displacement a
            stage can make, as a fraction of the image side.
        refine_points: ``P``, the sampled patch is ``P x P`` points.
        refine_hidden: width of each joint's refinement MLP.
        backbone_width: base width of ``alexnet_small``/``simple`` (their default when ``None``).
    """
    if num_keypoints < 1 or cascade_stages < 0:
        raise ValueError(f"pose_regression: num_keypoints must be >= 1 and cascade_stages >= 0 "
                         f"(got {num_keypoints}, {cascade_stages})")
    bb = build_backbone(backbone, weights=weights, width=backbone_width)
    head = RegressionHead(bb.channels[bb.names[-1]], num_keypoints, pool=pool, hidden=hidden,
                          dropout=dropout)
    if cascade_stages and refine_feature not in bb.channels:
        raise ValueError(f"pose_regression: refine_feature {refine_feature!r} is not a map of "
                         f"backbone {backbone!r} ({', '.join(bb.names)})")
    refine = [RefineStage(bb.channels[refine_feature], num_keypoints, refine_radius,
                          refine_points, refine_hidden) for _ in range(cascade_stages)]
    return PoseRegression(classes, bb, head, img_size, refine, refine_feature)
