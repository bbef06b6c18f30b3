"""The detector: a torchvision Mask R-CNN over forensic input channels, plus an image-level verdict head.

- Classes: 0 background, 1 real_tumor, 2 fake_added, 3 fake_removed (the COCO ids of the dataset contract).
- Input: one grey channel (uint8 / 255), normalised, then `forensics.ForensicStem` adds SRM residuals and a
  constrained convolution before the backbone's first convolution.
- Backbones: ``resnet50`` (the paper's), ``resnet34``, ``resnet18``, ``mobilenet_v3`` (CPU), ``tiny`` (tests).
  All from scratch (``weights=None``), with trainable BatchNorm: frozen BatchNorm only suits pretrained weights.
- An auxiliary image-level head (avg+max pooled FPN features -> 4 verdict logits) trains with the detector and
  gives a verdict even when no detection clears its threshold (the dominant error of early runs).
- Test time is cheap: few RPN proposals, few detections (a slice has at most a few regions).

The weights bundle (one ``torch.save`` file) is ``{"format", "config", "state_dict", "calibration", "meta"}``;
`predictor.Predictor.load` reads it. No Django here.
"""
from __future__ import annotations

import copy
import datetime as dt
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import mobilenet_v3_large, resnet18, resnet34, resnet50
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from .bundle_file import BUNDLE_FORMAT
from .forensics import IMAGE_MEAN, IMAGE_STD, ForensicStem
from .labels import VERDICTS

NUM_CLASSES = 4  # background + CATEGORIES
BACKBONES = ("resnet50", "resnet34", "resnet18", "mobilenet_v3", "tiny")


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; stored in the bundle."""

    backbone: str = "mobilenet_v3"
    srm: bool = True
    constrained: int = 3  # constrained-convolution filters (0: none)
    min_size: int = 256  # torchvision resizes the shorter side to this (256 x 256 slices pass unchanged)
    max_size: int = 512
    fpn_channels: int | None = None  # None: the backbone's default below
    representation_size: int | None = None
    mask_layers: tuple[int, ...] | None = None
    image_head: bool = True
    # RPN / RoI budgets: training and test
    rpn_pre_nms_top_n_train: int = 600
    rpn_post_nms_top_n_train: int = 300
    rpn_pre_nms_top_n_test: int = 200
    rpn_post_nms_top_n_test: int = 50
    rpn_batch_size_per_image: int = 128
    box_batch_size_per_image: int = 128
    box_detections_per_img: int = 10
    box_score_thresh: float = 0.01

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["mask_layers"] is not None:
            data["mask_layers"] = list(data["mask_layers"])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("mask_layers") is not None:
            values["mask_layers"] = tuple(values["mask_layers"])
        return cls(**values)


# Per-backbone defaults: (fpn_channels, representation_size, mask_layers)
_HEAD_DEFAULTS = {
    "resnet50": (256, 1024, (256, 256, 256, 256)),
    "resnet34": (128, 512, (128, 128, 128, 128)),
    "resnet18": (128, 512, (128, 128, 128, 128)),
    "mobilenet_v3": (128, 512, (128, 128, 128, 128)),
    "tiny": (32, 64, (32,)),
}


class TinyBody(nn.Module):
    """A few strided conv blocks: a detector small enough for unit tests (about 0.1 M parameters)."""

    def __init__(self, in_channels: int, widths=(16, 24, 32, 48)):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
            )

        self.stem = block(in_channels, widths[0])
        self.layer1 = block(widths[0], widths[1])  # stride 4
        self.layer2 = block(widths[1], widths[2])  # stride 8
        self.layer3 = block(widths[2], widths[3])  # stride 16
        self.widths = widths

    def forward(self, x):
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        return self.layer3(x)


class ForensicBackbone(nn.Module):
    """ForensicStem followed by a backbone-with-FPN; exposes ``out_channels`` as torchvision expects."""

    def __init__(self, stem: ForensicStem, body_with_fpn: BackboneWithFPN):
        super().__init__()
        self.stem = stem
        self.body_with_fpn = body_with_fpn
        self.out_channels = body_with_fpn.out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.body_with_fpn(self.stem(x))


def _replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )


def _build_backbone(config: ModelConfig) -> tuple[ForensicBackbone, tuple]:
    """The backbone and its anchor sizes (one tuple per feature level, small levels first)."""
    stem = ForensicStem(srm=config.srm, constrained=config.constrained)
    in_channels = stem.out_channels
    fpn_channels = config.fpn_channels or _HEAD_DEFAULTS[config.backbone][0]
    extra = LastLevelMaxPool()
    norm = nn.BatchNorm2d  # trainable: we train from scratch
    if config.backbone in ("resnet50", "resnet34", "resnet18"):
        builder = {"resnet50": resnet50, "resnet34": resnet34, "resnet18": resnet18}[config.backbone]
        body = builder(weights=None, norm_layer=norm)
        body.conv1 = _replace_first_conv(body.conv1, in_channels)
        expansion = 4 if config.backbone == "resnet50" else 1  # Bottleneck vs BasicBlock
        in_list = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
        return_layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
        fpn = BackboneWithFPN(body, return_layers, in_list, fpn_channels, extra_blocks=extra)
        anchors = ((16,), (32,), (64,), (128,), (256,))  # strides 4..64
    elif config.backbone == "mobilenet_v3":
        features = mobilenet_v3_large(weights=None, norm_layer=norm).features
        first = features[0][0]
        features[0][0] = _replace_first_conv(first, in_channels)
        stage_indices = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
        # strides 8, 16, 32 (+ max-pool 64): stride 4 is too costly on CPU, stride 16 alone misses small regions
        returned = stage_indices[-3:]
        return_layers = {str(idx): str(k) for k, idx in enumerate(returned)}
        in_list = [features[idx].out_channels for idx in returned]
        fpn = BackboneWithFPN(features, return_layers, in_list, fpn_channels, extra_blocks=extra)
        anchors = ((16,), (32,), (64,), (128,))
    elif config.backbone == "tiny":
        body = TinyBody(in_channels)
        return_layers = {"layer1": "0", "layer2": "1", "layer3": "2"}
        fpn = BackboneWithFPN(body, return_layers, list(body.widths[1:]), fpn_channels, extra_blocks=extra)
        anchors = ((16,), (32,), (64,), (128,))
    else:
        raise ValueError(f"Unknown backbone {config.backbone!r}; choose one of {', '.join(BACKBONES)}.")
    return ForensicBackbone(stem, fpn), anchors


class NativeScaleTransform(GeneralizedRCNNTransform):
    """torchvision's transform, except that training never upscales.

    Training crops (say 160 x 160 of a 256 x 256 slice) must stay at the native pixel scale: upscaling would cost
    what the crop saved and smear the noise the forensic channels read. At test time slices are resized as
    usual (shorter side to ``min_size``, capped by ``max_size``): 256 x 256 slices pass unchanged.
    """

    def resize(self, image, target=None):
        if self.training and min(image.shape[-2:]) <= self.min_size[-1]:
            return image, target
        return super().resize(image, target)


class ImageVerdictHead(nn.Module):
    """Avg- and max-pooled FPN levels -> logits of the four verdicts (order of labels.VERDICTS)."""

    def __init__(self, channels: int, n_levels: int, hidden: int = 256, n_verdicts: int = len(VERDICTS)):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * channels * n_levels, hidden), nn.ReLU(inplace=True), nn.Dropout(0.2), nn.Linear(hidden, n_verdicts)
        )

    def forward(self, features: "OrderedDict[str, torch.Tensor]") -> torch.Tensor:
        pooled = []
        for name, level in features.items():
            if name == "pool":
                continue
            pooled.append(F.adaptive_avg_pool2d(level, 1).flatten(1))
            pooled.append(F.adaptive_max_pool2d(level, 1).flatten(1))
        return self.mlp(torch.cat(pooled, dim=1))


class TamperMaskRCNN(MaskRCNN):
    """Mask R-CNN whose forward also returns image-level verdict logits.

    Training targets carry, beside torchvision's boxes/labels/masks, ``verdict``: the index in labels.VERDICTS.
    Losses gain ``loss_image``. In eval mode each result dict gains ``image_logits`` (4,).
    """

    def __init__(self, backbone: ForensicBackbone, *, image_head: ImageVerdictHead | None, **kwargs):
        super().__init__(backbone, **kwargs)
        self.image_head = image_head

    def forward(self, images, targets=None):  # noqa: D401 - torchvision's signature
        if self.training and targets is None:
            raise ValueError("In training mode, targets should be passed")
        original_image_sizes = [tuple(img.shape[-2:]) for img in images]
        image_list, targets_t = self.transform(images, targets)
        features = self.backbone(image_list.tensors)
        image_logits = self.image_head(features) if self.image_head is not None else None
        proposals, proposal_losses = self.rpn(image_list, features, targets_t)
        detections, detector_losses = self.roi_heads(features, proposals, image_list.image_sizes, targets_t)
        if self.training:
            losses = {}
            losses.update(detector_losses)
            losses.update(proposal_losses)
            if image_logits is not None:
                verdicts = torch.stack([t["verdict"].reshape(()) for t in targets]).to(image_logits.device)
                losses["loss_image"] = F.cross_entropy(image_logits, verdicts.long())
            return losses
        detections = self.transform.postprocess(detections, image_list.image_sizes, original_image_sizes)
        for i, det in enumerate(detections):
            det["image_logits"] = image_logits[i] if image_logits is not None else torch.zeros(len(VERDICTS))
        return detections


def build_model(config: ModelConfig | dict | None = None) -> TamperMaskRCNN:
    """A randomly initialised detector for ``config`` (no downloaded weights anywhere)."""
    if config is None:
        config = ModelConfig()
    elif isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    backbone, anchor_sizes = _build_backbone(config)
    defaults = _HEAD_DEFAULTS[config.backbone]
    channels = backbone.out_channels
    representation = config.representation_size or defaults[1]
    mask_layers = tuple(config.mask_layers or defaults[2])
    n_levels = len(anchor_sizes) - 1  # FPN levels without "pool"
    featmaps = [str(i) for i in range(n_levels)]
    anchor_generator = AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    box_roi_pool = MultiScaleRoIAlign(featmap_names=featmaps, output_size=7, sampling_ratio=2)
    mask_roi_pool = MultiScaleRoIAlign(featmap_names=featmaps, output_size=14, sampling_ratio=2)
    model = TamperMaskRCNN(
        backbone,
        image_head=ImageVerdictHead(channels, n_levels) if config.image_head else None,
        num_classes=None,
        min_size=config.min_size,
        max_size=config.max_size,
        image_mean=[IMAGE_MEAN],
        image_std=[IMAGE_STD],
        rpn_anchor_generator=anchor_generator,
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=config.rpn_batch_size_per_image,
        box_roi_pool=box_roi_pool,
        box_head=TwoMLPHead(channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, NUM_CLASSES),
        box_batch_size_per_image=config.box_batch_size_per_image,
        box_detections_per_img=config.box_detections_per_img,
        box_score_thresh=config.box_score_thresh,
        mask_roi_pool=mask_roi_pool,
        mask_head=MaskRCNNHeads(channels, mask_layers, 1),
        mask_predictor=MaskRCNNPredictor(mask_layers[-1], mask_layers[-1], NUM_CLASSES),
    )
    model.transform = NativeScaleTransform(config.min_size, config.max_size, [IMAGE_MEAN], [IMAGE_STD])
    return model


# --- Bundles -------------------------------------------------------------------------------------

DEFAULT_CALIBRATION = {
    # verdict probabilities = softmax(image_logits / temperature) mixed with detection evidence:
    # p = image_weight * p_image + (1 - image_weight) * p_detection
    "temperature": 1.0,
    "image_weight": 0.5,
    # detections below this score are not evidence and are not shown
    "detection_threshold": 0.3,
    # what is shown (see predictor.select_instances) and how a mask is cut; fitted for mask IoU on validation
    "mask_threshold": 0.5,
    "show_threshold": 0.0,
    "show_relative": 0.0,
    # test-time augmentation: also read the left-right mirror of the slice and fuse both views
    # (predictor.fuse_views); calibrate_detector keeps it only where it raises validation macro F1
    "test_time_flip": False,
    # a learned verdict (inference.ml.verdict_model) instead of the mix above, fitted on validation; None: the mix
    "verdict_model": None,
    # mask refinement (inference.ml.refiner, stored in the bundle under "refiner"): whether the shown masks are
    # redrawn, and where the refined probability is cut (fitted on validation for mask IoU)
    "refine": False,
    "refine_threshold": 0.5,
    # the final probabilities reshaped as p ** (1 / T), renormalised (inference.ml.confidence): fitted on
    # validation by the log likelihood of the true verdicts; keeps every verdict, makes the confidence honest
    "confidence_temperature": 1.0,
}


def make_bundle(
    model: nn.Module,
    config: ModelConfig | dict,
    *,
    name: str,
    version: str,
    calibration: dict | None = None,
    meta: dict | None = None,
) -> dict[str, Any]:
    """The bundle dict `save_bundle` writes (tensors on CPU)."""
    if isinstance(config, ModelConfig):
        config = config.to_dict()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    full_meta = {"name": name, "version": version, "created": dt.datetime.now(dt.timezone.utc).isoformat()}
    full_meta.update(meta or {})
    cal = copy.deepcopy(DEFAULT_CALIBRATION)
    cal.update(calibration or {})
    return {"format": BUNDLE_FORMAT, "config": dict(config), "state_dict": state, "calibration": cal, "meta": full_meta}


def compact_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    """The same bundle with floating-point weights stored as float16 (half the file; loaded back as float32).

    For shipping: evaluate the compacted file itself, since rounding can move a score near a threshold.
    """
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in bundle["state_dict"].items()}
    meta = {**bundle.get("meta", {}), "stored_dtype": "float16"}
    return {**bundle, "state_dict": state, "meta": meta}


def save_bundle(bundle: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(bundle, tmp)
    tmp.replace(path)
    return path


def load_bundle(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a bundle (tensors and plain data only: ``weights_only=True``) and check its format."""
    bundle = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{path} is not a detector bundle (expected format {BUNDLE_FORMAT!r}).")
    return bundle


def model_from_bundle(bundle: dict[str, Any]) -> TamperMaskRCNN:
    model = build_model(bundle["config"])
    # copies into the float32 parameters, so float16-stored bundles load too
    model.load_state_dict(bundle["state_dict"])
    model.eval()
    return model


def save_random_bundle(path: str | Path, *, backbone: str = "tiny", seed: int = 0) -> Path:
    """A random-weight detector bundle that `Predictor.load` accepts: for tests and demos, never for patients."""
    torch.manual_seed(seed)
    config = ModelConfig(backbone=backbone)
    model = build_model(config)
    model.eval()
    bundle = make_bundle(
        model,
        config,
        name=f"random-{backbone}",
        version=f"0.0.0+random.seed{seed}",
        meta={"description": "Random weights (untrained): for tests only.", "trained": False},
    )
    return save_bundle(bundle, path)
