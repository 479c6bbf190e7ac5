"""Encoders (backbones) shared by the methods: ResNet, EfficientNet-Lite and MobileNetV2.

Every encoder returns the stage features ``r2, r3, r4, r5`` at strides 4, 8, 16 and 32 (the
names RGMP / AGSS-VOS use for ResNet's ``res2..res5``), with their widths in ``.channels`` and
strides in ``.strides``; that is all a method's decoder (or a torchvision FPN,
:class:`EncoderWithFPN`) needs to know about it. :func:`create_encoder` builds one by name
(:data:`BACKBONES`); the architectures are torchvision's and timm's, not re-implemented here.

=====================  ========================================  ==========================  ==========
name                   architecture (library)                    channels r2, r3, r4, r5      input norm
=====================  ========================================  ==========================  ==========
``resnet18/34/50/101`` torchvision ``BasicBlock`` / ``Bottleneck``  (64, 128, 256, 512) x w/64   ImageNet
                       stages (width ``base_width``, 64 = paper)  (x4 for 50/101)
``efficientnet-lite0`` timm ``tf_efficientnet_lite0``             (24, 40, 112, 320)           0.5 / 0.5
``efficientnet-lite2`` timm ``tf_efficientnet_lite2``             (24, 48, 120, 352)           0.5 / 0.5
``mobilenet-v2``       torchvision ``mobilenet_v2().features``    (24, 32, 96, 320)            ImageNet
=====================  ========================================  ==========================  ==========

Where the stages are cut (parameter names equal the library model's, so its ImageNet weights
load by name, :func:`vostool.weights.load_encoder_weights`):

* ResNet: stem ``conv1 -> bn1 -> relu -> maxpool`` (stride 4), ``r2..r5 = layer1..layer4``.
  Names are torchvision's, so the official AGSS-VOS / RGMP checkpoints convert onto it unchanged.
* EfficientNet-Lite: stem ``conv_stem -> bn1`` (BN + ReLU6, stride 2), ``r2 = blocks[0:2]``,
  ``r3 = blocks[2]``, ``r4 = blocks[3:5]``, ``r5 = blocks[5:7]`` (timm's ``features_only`` cut
  points; the 1x1 ``conv_head`` to 1280 channels and the classifier are not part of the encoder).
* MobileNetV2: stem ``features[0]`` (conv, BN, ReLU6, stride 2), ``r2 = features[1:4]``,
  ``r3 = features[4:7]``, ``r4 = features[7:14]``, ``r5 = features[14:18]`` (``features[18]``,
  the 1x1 conv to 1280, and the classifier are not part of the encoder).

**Mask input** (RGMP-style 4-channel encoders, ``mask_channels > 0``): a parallel convolution on
the stem, the same kernel / stride / padding as the stem convolution, with a bias, whose output is
*added* to the stem convolution's output before the first normalisation (equal to a 4-channel
first convolution). It is ``conv1_p`` for ResNet (RGMP's name) and ``conv_stem_p`` for the others.
:func:`vostool.weights.load_encoder_weights` sets it to zero, so at step 0 a pretrained encoder computes
exactly its ImageNet features whatever the mask.

Input normalisation travels with the encoder (:meth:`Encoder.normalize`): ImageNet mean / std for
ResNet and MobileNetV2, mean = std = 0.5 for EfficientNet-Lite (how those weights were trained).
BatchNorm is the caller's to freeze (:func:`~vostool.models.blocks.freeze_batchnorm`): the
methods freeze it for pretrained encoders and batches of one video.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ..errors import InputError
from .registry import BACKBONES, RESNETS, TIMM_BACKBONES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


_DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


def backbone_name(backbone: str | None = None, depth: int | None = None) -> str:
    """The backbone of a builder's ``backbone`` / ``depth`` arguments (``depth``: the older
    spelling of ``resnet{depth}``, kept so weights exported before backbones were selectable still
    load); InputError for unknown names or a contradiction."""
    if depth is not None:
        from_depth = f"resnet{depth}"
        if from_depth not in RESNETS:
            raise InputError(f"ResNet depth {depth} is not available; choose one of {', '.join(r[6:] for r in RESNETS)}")
        if backbone is not None and backbone != from_depth:
            raise InputError(f"backbone {backbone!r} and depth {depth} disagree; give only --backbone")
        return from_depth
    name = backbone or "resnet50"
    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return name


class Encoder(nn.Module):
    """Base class: stage features ``[r2, r3, r4, r5][:out_stage]`` of an image and optional masks.

    Subclasses set ``channels``, ``mean``, ``std``, ``mask_conv_name`` and implement
    :meth:`_stem_conv` (the stem's convolution), :meth:`_stem_rest` (what follows it up to the
    first stage) and :meth:`_stage`.

    Shapes (input ``(B, 3, H, W)``, ``H, W`` multiples of 32): ``r_i`` is
    ``(B * n, channels[i - 2], H / strides[i - 2], W / strides[i - 2])``, ``n`` masks per image.
    """

    strides: tuple[int, int, int, int] = (4, 8, 16, 32)
    channels: tuple[int, int, int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    mask_conv_name: str = ""
    """Attribute name of the mask convolution (``conv1_p`` / ``conv_stem_p``)."""
    head_prefixes: tuple[str, ...] = ()
    """Key prefixes of the library model that the encoder does not use (classifier, last 1x1)."""

    def __init__(self, name: str, *, mask_channels: int = 0, out_stage: int = 4) -> None:
        super().__init__()
        if not 1 <= out_stage <= 4:
            raise ValueError("out_stage must be 1..4")
        self.name = name
        self.mask_channels = mask_channels
        self.out_stage = out_stage
        self._attached: tuple[str, ...] = ()

    # --- to implement -----------------------------------------------------------------------
    def _stem_conv(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _stem_rest(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``i`` (1..4): its input -> ``r_{i+1}``."""
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------------
    @property
    def mask_conv(self) -> nn.Module | None:
        return getattr(self, self.mask_conv_name, None) if self.mask_conv_name else None

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` RGB in [0, 1] -> the input normalisation this encoder was trained with."""
        mean = image.new_tensor(self.mean).view(1, 3, 1, 1)
        std = image.new_tensor(self.std).view(1, 3, 1, 1)
        return (image - mean) / std

    def stem(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Stem, with the mask convolution added before the first normalisation.

        Args:
            image: ``(B, 3, H, W)`` normalised RGB.
            mask: ``(B * n, m, H, W)``: ``n`` masks per image (``n >= 1``; mask rows
                ``b * n .. b * n + n - 1`` go with image ``b``). The stem convolution of the image
                is computed once and shared by its ``n`` masks (equal to repeating the image).

        Returns:
            ``(B * n, c, H/s, W/s)``: the input of the first stage (``s`` = 4 for ResNet, 2 else).
        """
        x = self._stem_conv(image)
        conv_p = self.mask_conv
        if conv_p is not None:
            if mask is None:
                raise ValueError("this encoder takes a mask input")
            p = conv_p(mask.to(x.dtype))
            b, n = x.shape[0], p.shape[0] // max(x.shape[0], 1)
            if n * b != p.shape[0]:
                raise ValueError(f"{p.shape[0]} masks cannot be shared out over {b} images")
            x = (x.unsqueeze(1) + p.unflatten(0, (b, n))).flatten(0, 1) if n != 1 else x + p
        return self._stem_rest(x)

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, *, stages: int | None = None) -> list[torch.Tensor]:
        """``[r2, r3, r4, r5][:stages]`` (default ``out_stage``); the batch is the mask batch
        ``B * n`` when masks are given (see :meth:`stem`)."""
        n = self.out_stage if stages is None else min(stages, self.out_stage)
        return self.later_stages(self.stem(image, mask), start=1, stop=n)

    def later_stages(self, x: torch.Tensor, *, start: int = 2, stop: int | None = None) -> list[torch.Tensor]:
        """Run stages ``start .. stop`` (default: to ``out_stage``) on ``x``, the input of stage
        ``start`` (e.g. ``r2`` for ``start = 2``); returns their outputs (``[r3, r4, r5]``)."""
        feats = []
        for i in range(start, (self.out_stage if stop is None else stop) + 1):
            x = self._stage(i, x)
            feats.append(x)
        return feats

    def first_stage(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Stem + the first stage only: ``r2 (B * n, channels[0], H/4, W/4)`` (AGSS-VOS's
        instance-specific feature extractor)."""
        return self.forward(image, mask, stages=1)[0]

    def pretrained_subset(self, state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
        """What of ImageNet weights in the library model's own layout (timm / torchvision names,
        classifier included or not) this encoder takes: ``(state dict, key prefixes it may lack)``.

        Keys of stages this encoder does not build (``out_stage < 4``) and of the library model's
        head (:attr:`head_prefixes`) are dropped; the mask convolution and modules attached to
        the encoder may be missing. Loading it strictly
        (:func:`vostool.weights.load_encoder_weights`) then catches a file for another network.
        """
        own = self.state_dict()
        skip = tuple(f"{n}." for n in (self.mask_conv_name, *self._attached) if n)
        dropped = self._unbuilt_prefixes()
        return {k: v for k, v in state_dict.items() if k in own or not k.startswith(self.head_prefixes + dropped)}, skip

    def zero_mask_conv(self) -> None:
        """Zero the mask convolution, so a pretrained encoder computes exactly its ImageNet features."""
        conv_p = self.mask_conv
        if conv_p is not None:
            with torch.no_grad():
                for p in conv_p.parameters():
                    p.zero_()

    def _unbuilt_prefixes(self) -> tuple[str, ...]:
        """Key prefixes of the library model's stages beyond ``out_stage`` (not built)."""
        return ()

    def attach(self, name: str, module: nn.Module) -> None:
        """Register a method's own module inside the encoder (AGSS-VOS's attention generator is
        ``encoder.atn`` in the official checkpoints); :meth:`pretrained_subset` leaves it out."""
        self.add_module(name, module)
        self._attached = (*self._attached, name)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The parameters of the library model's layers (what ImageNet weights initialise): all
        but the mask convolution and attached modules."""
        fresh = {self.mask_conv_name, *self._attached}
        return [p for name, p in self.named_parameters() if name.split(".", 1)[0] not in fresh]

    def mask_parameters(self) -> list[nn.Parameter]:
        """The mask convolution's parameters (empty without a mask input)."""
        conv_p = self.mask_conv
        return [] if conv_p is None else list(conv_p.parameters())


class ResNetEncoder(Encoder):
    """ResNet-18/34/50/101 (torchvision blocks) with an optional mask input ``conv1_p``.

    Args:
        depth: 18, 34, 50 or 101.
        base_width: channels of the stem (64 in the papers and torchvision); stage widths scale
            with it (``(c, 2c, 4c, 8c)``, x4 for the Bottleneck depths 50 / 101).
        mask_channels: extra input channels (1 for RGMP's mask) through ``conv1_p`` (7x7
            stride 2, with bias), added to ``conv1(rgb)`` before ``bn1``.
        out_stage: last stage built (1..4).

    Parameter names are torchvision's ``resnetNN`` (``conv1``, ``bn1``, ``layer1..4``); RGMP and
    AGSS-VOS call the stages ``res2..res5``.
    """

    mask_conv_name = "conv1_p"
    head_prefixes = ("fc.",)

    def __init__(self, depth: int = 50, *, base_width: int = 64, mask_channels: int = 0, out_stage: int = 4) -> None:
        super().__init__(f"resnet{depth}", mask_channels=mask_channels, out_stage=out_stage)
        if depth not in _DEPTHS:
            raise ValueError(f"depth must be one of {sorted(_DEPTHS)}")
        block, layers = _DEPTHS[depth]
        self.conv1 = nn.Conv2d(3, base_width, 7, 2, 3, bias=False)
        self.conv1_p = nn.Conv2d(mask_channels, base_width, 7, 2, 3, bias=True) if mask_channels else None
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self._inplanes = base_width
        widths = [base_width * m for m in (1, 2, 4, 8)]
        stages = []
        for i, (w, n) in enumerate(zip(widths, layers)):
            stages.append(self._make_layer(block, w, n, stride=1 if i == 0 else 2) if i < out_stage else None)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.channels = tuple(w * block.expansion for w in widths)  # type: ignore[assignment]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        out = planes * block.expansion  # type: ignore[attr-defined]
        if stride != 1 or self._inplanes != out:
            downsample = nn.Sequential(nn.Conv2d(self._inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
        mods = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = out
        mods += [block(out, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def _stem_conv(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv1(image)

    def _stem_rest(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(x)))

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"layer{i}")(x)

    def _unbuilt_prefixes(self) -> tuple[str, ...]:
        return tuple(f"layer{i}." for i in range(self.out_stage + 1, 5))


def _mask_conv_like(stem: nn.Conv2d, mask_channels: int) -> nn.Conv2d:
    """A convolution from ``mask_channels`` with the stem convolution's kernel, stride, padding
    (and class: timm's TF "same" padding stays "same") plus a bias."""
    return type(stem)(mask_channels, stem.out_channels, stem.kernel_size, stride=stem.stride, padding=stem.padding, bias=True)


class _LayerListEncoder(Encoder):
    """An encoder whose stages are ranges of one ``nn.Sequential`` of the library model
    (``_layers``: its attribute name; ``_CUTS``: the ``(start, end)`` range of each stage;
    ``_NUM``: its length in the library model)."""

    _layers: str
    _CUTS: tuple[tuple[int, int], ...]
    _NUM: int

    def _keep(self, layers: nn.Sequential) -> nn.Sequential:
        """The layers the built stages use (up to ``out_stage``)."""
        return nn.Sequential(*list(layers)[: self._CUTS[self.out_stage - 1][1]])

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        layers = getattr(self, self._layers)
        start, end = self._CUTS[i - 1]
        for j in range(start, end):
            x = layers[j](x)
        return x

    def _unbuilt_prefixes(self) -> tuple[str, ...]:
        end = self._CUTS[self.out_stage - 1][1]
        return tuple(f"{self._layers}.{j}." for j in range(end, self._NUM))


class EfficientNetLiteEncoder(_LayerListEncoder):
    """EfficientNet-Lite0 / Lite2 from timm (``tf_efficientnet_lite0/2``: TensorFlow "same"
    padding and BN epsilon 1e-3, as the ImageNet weights were trained), mean = std = 0.5.

    Args:
        name: ``efficientnet-lite0`` or ``efficientnet-lite2``.
        mask_channels: extra input channels through ``conv_stem_p`` (3x3 stride 2, bias).
        out_stage: last stage built (1..4).

    Parameter names are timm's (``conv_stem``, ``bn1``, ``blocks.N.M.*``).
    """

    mean = HALF
    std = HALF
    mask_conv_name = "conv_stem_p"
    head_prefixes = ("conv_head.", "bn2.", "classifier.")
    _layers, _CUTS, _NUM = "blocks", ((0, 2), (2, 3), (3, 5), (5, 7)), 7

    def __init__(self, name: str, *, mask_channels: int = 0, out_stage: int = 4) -> None:
        super().__init__(name, mask_channels=mask_channels, out_stage=out_stage)
        model = _timm_model(TIMM_BACKBONES[name])
        self.conv_stem = model.conv_stem
        self.conv_stem_p = _mask_conv_like(model.conv_stem, mask_channels) if mask_channels else None
        self.bn1 = model.bn1  # BatchNorm + ReLU6
        self.blocks = self._keep(model.blocks)
        self.channels = tuple(_out_channels(model.blocks[end - 1]) for _, end in self._CUTS)  # type: ignore[assignment]

    def _stem_conv(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv_stem(image)

    def _stem_rest(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(x)


class MobileNetV2Encoder(_LayerListEncoder):
    """MobileNetV2 1.0 feature layers from torchvision (``mobilenet_v2().features``), ImageNet
    normalisation.

    Args:
        mask_channels: extra input channels through ``conv_stem_p`` (3x3 stride 2, bias), added
            to ``features[0][0](rgb)`` before ``features[0][1]`` (BatchNorm).
        out_stage: last stage built (1..4).

    Parameter names are torchvision's ``mobilenet_v2()`` (``features.N.*``).
    """

    mask_conv_name = "conv_stem_p"
    head_prefixes = ("features.18.", "classifier.")
    _layers, _CUTS, _NUM = "features", ((1, 4), (4, 7), (7, 14), (14, 18)), 19

    def __init__(self, *, mask_channels: int = 0, out_stage: int = 4) -> None:
        super().__init__("mobilenet-v2", mask_channels=mask_channels, out_stage=out_stage)
        from torchvision.models import mobilenet_v2

        features = mobilenet_v2().features
        self.features = self._keep(features)
        self.conv_stem_p = _mask_conv_like(features[0][0], mask_channels) if mask_channels else None
        self.channels = tuple(features[end - 1].out_channels for _, end in self._CUTS)  # type: ignore[assignment]

    def _stem_conv(self, image: torch.Tensor) -> torch.Tensor:
        return self.features[0][0](image)

    def _stem_rest(self, x: torch.Tensor) -> torch.Tensor:
        return self.features[0][2](self.features[0][1](x))


def _out_channels(block: nn.Module) -> int:
    """Output width of a timm EfficientNet block (its last convolution)."""
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return int(convs[-1].out_channels)


def timm_available() -> bool:
    """Whether timm is importable."""
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def _timm_model(arch: str) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise InputError(f"the {arch} backbone needs timm; install it with: pip install timm") from None
    return timm.create_model(arch, pretrained=False)


def create_encoder(backbone: str = "resnet50", *, mask_channels: int = 0, out_stage: int = 4, base_width: int = 64) -> Encoder:
    """An encoder by name (:data:`BACKBONES`), randomly initialised.

    Args:
        backbone: the architecture.
        mask_channels: extra mask input channels (0: RGB only).
        out_stage: last stage built (1..4; ``forward`` returns ``r2 .. r_{out_stage+1}``).
        base_width: ResNet stem width (64 = torchvision / papers); only ResNets take another.

    Raises:
        InputError: unknown name, a width for a fixed-width backbone, or timm missing.
    """
    name = backbone_name(backbone)
    if name in RESNETS:
        return ResNetEncoder(int(name[6:]), base_width=base_width, mask_channels=mask_channels, out_stage=out_stage)
    if base_width != 64:
        raise InputError(f"base_width applies to ResNet backbones only; {name} has a fixed width")
    if name in TIMM_BACKBONES:
        return EfficientNetLiteEncoder(name, mask_channels=mask_channels, out_stage=out_stage)
    return MobileNetV2Encoder(mask_channels=mask_channels, out_stage=out_stage)


class EncoderWithFPN(nn.Module):
    """An RGB encoder followed by torchvision's :class:`~torchvision.ops.FeaturePyramidNetwork`
    (plus a max-pooled extra level), the ``backbone`` interface torchvision's detectors expect
    (``out_channels``; ``forward(images) -> OrderedDict`` of ``"0".."3"`` at strides 4..32 and
    ``"pool"`` at 64).

    Args:
        encoder: an encoder without mask input, all four stages built.
        out_channels: FPN width (256 in Mask R-CNN).
    """

    def __init__(self, encoder: Encoder, out_channels: int = 256) -> None:
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        if encoder.out_stage != 4 or encoder.mask_channels:
            raise ValueError("an FPN needs an RGB encoder with all four stages")
        self.body = encoder
        self.fpn = FeaturePyramidNetwork(list(encoder.channels), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))
