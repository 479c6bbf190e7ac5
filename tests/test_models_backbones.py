"""Encoders (vostool.models.backbones): stage shapes, the mask input on the stem, pretrained
loading, and that the ImageNet files of the ``train`` extra are the ones weights.toml pins and
really classify / describe real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vostool.errors import InputError, WeightsError
from vostool.models.backbones import BACKBONES, TIMM_BACKBONES, EncoderWithFPN, ResNetEncoder, backbone_name, create_encoder, timm_available
from vostool.weights import load_encoder_weights

needs_timm = pytest.mark.skipif(not timm_available(), reason="timm (the train extra) is not installed")


def _small(name: str, **kwargs: object) -> torch.nn.Module:
    """A backbone, narrow for ResNets so the tests stay fast."""
    if name in TIMM_BACKBONES and not timm_available():
        pytest.skip("timm (the train extra) is not installed")
    return create_encoder(name, base_width=8 if name.startswith("resnet") else 64, **kwargs)


@pytest.mark.parametrize("name", [b for b in BACKBONES if b != "resnet101"])
def test_stage_shapes_and_channels(name: str) -> None:
    enc = _small(name, mask_channels=1).eval()
    with torch.no_grad():
        feats = enc(enc.normalize(torch.rand(1, 3, 64, 96)), torch.rand(1, 1, 64, 96))
    assert len(feats) == 4 and enc.strides == (4, 8, 16, 32)
    for f, c, s in zip(feats, enc.channels, enc.strides):
        assert f.shape == (1, c, 64 // s, 96 // s)


@pytest.mark.parametrize("depth,expansion", [(18, 1), (50, 4)])
def test_resnet_widths_scale_with_base_width(depth: int, expansion: int) -> None:
    assert ResNetEncoder(depth, base_width=8).channels == tuple(8 * m * expansion for m in (1, 2, 4, 8))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet-v2", "efficientnet-lite0"])
def test_stem_shares_rgb_features_over_masks(name: str) -> None:
    """B images with K masks each give the same features as repeating every image K times."""
    torch.manual_seed(0)
    enc = _small(name, mask_channels=1).eval()
    image, masks = torch.rand(2, 3, 64, 64), torch.rand(6, 1, 64, 64)
    with torch.no_grad():
        shared = enc(image, masks)
        repeated = enc(image.repeat_interleave(3, 0), masks)
        first = enc.first_stage(image, masks)
    for a, b in zip(shared, repeated):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(first, shared[0])
    with pytest.raises(ValueError):
        enc(image, torch.rand(5, 1, 64, 64))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet-v2", "efficientnet-lite0"])
def test_mask_conv_is_added_before_the_first_norm_and_zeroed_by_pretrained_loading(name: str) -> None:
    enc = _small(name, mask_channels=1).eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = enc(image, torch.zeros(1, 1, 64, 64))[-1]
        b = enc(image, torch.ones(1, 1, 64, 64))[-1]
    assert not torch.allclose(a, b)  # random mask conv: the mask changes the features
    # "Pretrained" weights from an RGB copy of the same architecture: the mask conv is zeroed, so
    # the 4-channel encoder computes exactly the RGB encoder's features whatever the mask.
    rgb = _small(name).eval()
    load_encoder_weights(enc, rgb.state_dict(), what="test")
    with torch.no_grad():
        want = rgb(image)[-1]
        for m in (torch.zeros(1, 1, 64, 64), torch.ones(1, 1, 64, 64)):
            torch.testing.assert_close(enc(image, m)[-1], want)


def test_out_stage_and_head_keys_are_ignored_but_other_keys_are_not() -> None:
    full = _small("mobilenet-v2").state_dict()
    three = _small("mobilenet-v2", out_stage=3)
    assert not any(k.startswith("features.14.") for k in three.state_dict())
    load_encoder_weights(three, {**full, "classifier.1.weight": torch.zeros(1000, 1280)}, what="test")
    with pytest.raises(WeightsError, match="unexpected"):
        load_encoder_weights(three, {**full, "something.else": torch.zeros(1)}, what="test")
    with pytest.raises(WeightsError, match="missing"):
        load_encoder_weights(three, {k: v for k, v in full.items() if not k.startswith("features.3.")}, what="test")


def test_backbone_names() -> None:
    assert backbone_name() == "resnet50"
    assert backbone_name(depth=18) == "resnet18"
    assert backbone_name("mobilenet-v2") == "mobilenet-v2"
    with pytest.raises(InputError, match="unknown backbone"):
        backbone_name("vgg16")
    with pytest.raises(InputError, match="disagree"):
        backbone_name("resnet50", 18)
    with pytest.raises(InputError, match="fixed width"):
        create_encoder("mobilenet-v2", base_width=32)


def test_fpn_sits_on_any_encoder() -> None:
    fpn = EncoderWithFPN(_small("mobilenet-v2"), out_channels=16).eval()
    with torch.no_grad():
        out = fpn(torch.rand(1, 3, 64, 96))
    assert list(out) == ["0", "1", "2", "3", "pool"]
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert all(v.shape[1] == 16 for v in out.values())


# --------------------------------------------------------------------------------------------
# The ImageNet files of the train extra (skipped when the wheels are not installed)


def _photo(shared: Path, name: str, size: int) -> torch.Tensor:
    """Frame 0 of a DAVIS sequence, resized (shorter side ``size``, bicubic) and centre-cropped."""
    with Image.open(shared / "data" / "davis16-480p" / "JPEGImages" / "480p" / name / "00000.jpg") as im:
        im = im.convert("RGB")
        w, h = im.size
        s = size / min(w, h)
        im = im.resize((round(w * s), round(h * s)), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


def _resolved(entry: str):
    from vostool.weights import load_manifest, resolve_weights
    from vostool.weights.resolve import distribution_file

    e = load_manifest().entry(entry)
    if distribution_file(e.source.distribution, e.source.member) is None:
        pytest.skip(f"{e.source.distribution} (the train extra) is not installed")
    return e, resolve_weights(e.target, entry, offline=True)


# ImageNet-1k class indices: 294 brown bear, 385 Indian elephant, 386 African elephant, 752 racket.
PHOTO_CLASSES = {"bear": {294}, "elephant": {385, 386}, "tennis": {752}}


@needs_timm
@pytest.mark.shared
@pytest.mark.parametrize(
    "entry,arch,size",
    [("efficientnet-lite2.imagenet", "tf_efficientnet_lite2", 260), ("efficientnet-lite0.imagenet", "tf_efficientnet_lite0", 224)],
)
def test_efficientnet_lite_file_is_pinned_and_classifies_real_photos(shared_dir: Path, entry: str, arch: str, size: int) -> None:
    import timm

    from vostool.weights import sha256_file

    e, resolved = _resolved(entry)
    assert resolved.resolved_by == "distribution" and sha256_file(resolved.path) == e.sha256
    model = timm.create_model(arch, pretrained=False).eval()
    model.load_state_dict(resolved.state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == e.num_params
    enc = create_encoder(e.target, mask_channels=1).eval()
    load_encoder_weights(enc, resolved.state_dict(), what="test")
    for name, classes in PHOTO_CLASSES.items():
        x = enc.normalize(_photo(shared_dir, name, size))
        with torch.no_grad():
            top = int(model(x).argmax())
            feats = enc(x, torch.ones(1, 1, size, size))[-1]
        assert top in classes, f"{name}: class {top}"
        # The encoder is the classifier's body: its r5 equals timm's last block output.
        with torch.no_grad():
            torch.testing.assert_close(feats, model.blocks(model.bn1(model.conv_stem(x))))


def _bn_input_zscore(enc: torch.nn.Module, x: torch.Tensor) -> float:
    """Mean over BatchNorm layers and channels of ``|batch mean - running mean| / running std`` of
    each BatchNorm's input: small when the weights were trained on images like ``x``."""
    scores: list[float] = []

    def hook(mod: torch.nn.BatchNorm2d, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        z = (inp[0].mean((0, 2, 3)) - mod.running_mean) / (mod.running_var + mod.eps).sqrt()
        scores.append(float(z.abs().mean()))

    hooks = [m.register_forward_hook(hook) for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        enc(x)
    for h in hooks:
        h.remove()
    return float(np.mean(scores))


@pytest.mark.shared
def test_mobilenet_v2_file_is_pinned_and_its_statistics_fit_real_photos(shared_dir: Path) -> None:
    """No classifier ships with it: check instead that on real photos with ImageNet normalisation
    every BatchNorm sees inputs with the statistics it was trained with (0.14 standard deviations
    off on average; the same file with its convolution weights shuffled is ~5 off)."""
    from torchvision.models import mobilenet_v2

    from vostool.weights import sha256_file

    e, resolved = _resolved("mobilenet-v2.imagenet")
    assert sha256_file(resolved.path) == e.sha256
    sd = resolved.state_dict()
    model = mobilenet_v2()
    model.features.load_state_dict({k[len("features.") :]: v for k, v in sd.items()}, strict=True)
    assert sum(p.numel() for p in model.features.parameters()) == e.num_params
    enc = create_encoder("mobilenet-v2").eval()
    load_encoder_weights(enc, sd, what="test")
    x = enc.normalize(torch.cat([_photo(shared_dir, n, 224) for n in PHOTO_CLASSES]))
    assert _bn_input_zscore(enc, x) < 0.5
    gen = torch.Generator().manual_seed(0)
    shuffled = {k: v.flatten()[torch.randperm(v.numel(), generator=gen)].view_as(v) if v.dim() == 4 else v for k, v in sd.items()}
    load_encoder_weights(enc, shuffled, what="test")
    assert _bn_input_zscore(enc, x) > 1.0
