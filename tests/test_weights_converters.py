"""Converters for the authors' original checkpoints.

Synthetic checkpoints are built from small module trees named like the authors' code
(princeton-vl/RAFT, dvlab-research/AGSS-VOS, seoungwugoh/RGMP), independent of the converters.
The real RAFT-small checkpoint in ../shared is used when present.
"""

from __future__ import annotations

import importlib.util
import json

import cv2
import pytest
import torch
from torch import nn
from torchvision.models.optical_flow import raft_large, raft_small
from torchvision.models.resnet import Bottleneck

from vostool.errors import WeightsError
from vostool.weights import (
    convert,
    convert_raft_original,
    detect_layout,
    import_weights,
    is_raft_original,
    load_into,
    load_state_dict,
    resolve_weights,
)
from vostool.weights.converters import convert_agss_original, convert_rgmp_original, rgmp_init_for

# ----------------------------------------------------------------------------------------------
# Original RAFT module trees (names and shapes as in princeton-vl/RAFT core/extractor.py, update.py)
# ----------------------------------------------------------------------------------------------


def _norm(kind: str, ch: int) -> nn.Module:
    return {"batch": lambda: nn.BatchNorm2d(ch), "instance": lambda: nn.InstanceNorm2d(ch), "none": nn.Sequential}[kind]()


class _Residual(nn.Module):
    def __init__(self, cin: int, planes: int, norm: str, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1)
        self.norm1, self.norm2 = _norm(norm, planes), _norm(norm, planes)
        if stride != 1:
            self.norm3 = _norm(norm, planes)
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride), self.norm3)


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, norm: str, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes // 4, 1)
        self.conv2 = nn.Conv2d(planes // 4, planes // 4, 3, stride, 1)
        self.conv3 = nn.Conv2d(planes // 4, planes, 1)
        self.norm1, self.norm2, self.norm3 = _norm(norm, planes // 4), _norm(norm, planes // 4), _norm(norm, planes)
        if stride != 1:
            self.norm4 = _norm(norm, planes)
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride), self.norm4)


class _Encoder(nn.Module):
    def __init__(self, small: bool, norm: str, out: int) -> None:
        super().__init__()
        block, dims = (_Bottleneck, (32, 32, 64, 96)) if small else (_Residual, (64, 64, 96, 128))
        self.conv1 = nn.Conv2d(3, dims[0], 7, 2, 3)
        self.norm1 = _norm(norm, dims[0])
        cin = dims[0]
        for i, (d, s) in enumerate(zip(dims[1:], (1, 2, 2)), 1):
            setattr(self, f"layer{i}", nn.Sequential(block(cin, d, norm, s), block(d, d, norm, 1)))
            cin = d
        self.conv2 = nn.Conv2d(cin, out, 1)


def _original_raft(small: bool) -> nn.Module:
    """Module tree with the original RAFT's names, wrapped like DataParallel (``module.``)."""
    raft = nn.Module()
    hdim = 96 if small else 128
    cdim = 64 if small else 128
    raft.fnet = _Encoder(small, "instance", 128 if small else 256)
    raft.cnet = _Encoder(small, "none" if small else "batch", hdim + cdim)
    ub = raft.update_block = nn.Module()
    enc = ub.encoder = nn.Module()
    cor = 4 * (2 * (3 if small else 4) + 1) ** 2
    gru = ub.gru = nn.Module()
    if small:
        enc.convc1 = nn.Conv2d(cor, 96, 1)
        enc.convf1, enc.convf2 = nn.Conv2d(2, 64, 7), nn.Conv2d(64, 32, 3)
        enc.conv = nn.Conv2d(128, 80, 3)
        for g in "zrq":
            setattr(gru, f"conv{g}", nn.Conv2d(hdim + 82 + cdim, hdim, 3))
    else:
        enc.convc1, enc.convc2 = nn.Conv2d(cor, 256, 1), nn.Conv2d(256, 192, 3)
        enc.convf1, enc.convf2 = nn.Conv2d(2, 128, 7), nn.Conv2d(128, 64, 3)
        enc.conv = nn.Conv2d(64 + 192, 128 - 2, 3)
        for g in "zrq":
            setattr(gru, f"conv{g}1", nn.Conv2d(hdim + 128 + cdim, hdim, (1, 5)))
            setattr(gru, f"conv{g}2", nn.Conv2d(hdim + 128 + cdim, hdim, (5, 1)))
        ub.mask = nn.Sequential(nn.Conv2d(128, 256, 3), nn.ReLU(), nn.Conv2d(256, 64 * 9, 1))
    head = ub.flow_head = nn.Module()
    head.conv1, head.conv2 = nn.Conv2d(hdim, 128 if small else 256, 3), nn.Conv2d(128 if small else 256, 2, 3)
    wrapper = nn.Module()
    wrapper.module = raft
    for t in wrapper.state_dict().values():
        if t.is_floating_point():
            t.normal_()
    return wrapper


@pytest.mark.parametrize("small", [True, False], ids=["raft_small", "raft_large"])
def test_raft_original_layout_converts_to_torchvision(small):
    sd = _original_raft(small).state_dict()
    assert is_raft_original(sd) and detect_layout(sd) == "raft-original"
    out = convert_raft_original(sd)
    net = raft_small() if small else raft_large()
    load_into(net, out)  # strict: every key present, none left over, all shapes equal
    got = net.state_dict()
    # Values land where torchvision keeps the same weights.
    pairs = [
        ("module.fnet.conv1.weight", "feature_encoder.convnormrelu.0.weight"),
        ("module.cnet.layer2.0.downsample.0.weight", "context_encoder.layer2.0.downsample.0.weight"),
        ("module.update_block.encoder.convc1.bias", "update_block.motion_encoder.convcorr1.0.bias"),
        ("module.update_block.flow_head.conv2.weight", "update_block.flow_head.conv2.weight"),
    ]
    if small:
        pairs += [
            ("module.cnet.layer3.1.conv3.weight", "context_encoder.layer3.1.convnormrelu3.0.weight"),
            ("module.update_block.gru.convq.weight", "update_block.recurrent_block.convgru1.convq.weight"),
        ]
    else:
        pairs += [
            ("module.cnet.layer1.0.norm2.running_var", "context_encoder.layer1.0.convnormrelu2.1.running_var"),
            ("module.cnet.norm1.weight", "context_encoder.convnormrelu.1.weight"),
            ("module.cnet.layer3.0.downsample.1.bias", "context_encoder.layer3.0.downsample.1.bias"),
            ("module.update_block.gru.convr2.weight", "update_block.recurrent_block.convgru2.convr.weight"),
            ("module.update_block.mask.2.weight", "mask_predictor.conv.weight"),
        ]
    for a, b in pairs:
        assert torch.equal(sd[a], got[b]), (a, b)
    # The prefix is optional.
    assert convert_raft_original({k.removeprefix("module."): v for k, v in sd.items()}).keys() == out.keys()


def test_import_unpinned_raft_large_checkpoint_is_converted_and_recorded(tmp_path, monkeypatch):
    """raft-large.things has no published sha256 (manual source): import converts it, checks it
    against raft_large, and records the file's own sha256 as unpinned."""
    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "raft-things.pth"
    torch.save(_original_raft(False).state_dict(), ckpt)
    with pytest.raises(WeightsError, match="not installed.*vostool weights import raft-large.things FILE"):
        resolve_weights("raft-large", offline=True)
    rec = import_weights("raft-large.things", ckpt)
    assert not rec.pinned and rec.converted_from == "raft-original" and rec.layout == "torchvision"
    r = resolve_weights("raft-large", offline=True)
    assert (r.name, r.resolved_by, r.pinned, r.sha256) == ("raft-large.things", "cache", False, rec.sha256)
    load_into(raft_large(), r.state_dict())
    small = tmp_path / "small.pth"
    torch.save(_original_raft(True).state_dict(), small)
    with pytest.raises(WeightsError, match="do not fit RAFT"):  # a RAFT-small file is not raft-large weights
        import_weights("raft-large.things", small)


def test_raft_converter_rejects_foreign_and_extra_keys():
    sd = _original_raft(True).state_dict()
    with pytest.raises(WeightsError, match="no place in torchvision"):
        convert_raft_original({**sd, "module.update_block.extra.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match="not an original RAFT"):
        convert_raft_original(raft_small().state_dict())
    assert not is_raft_original(raft_small().state_dict())


@pytest.mark.shared
def test_real_raft_small_checkpoint_converts_and_loads_strictly(shared_dir):
    path = shared_dir / "weights" / "raft-small.pth"
    sd = load_state_dict(path)
    assert sum(v.numel() for v in sd.values()) == 990162
    net = raft_small()
    load_into(net, convert_raft_original(sd))
    assert sum(p.numel() for p in net.parameters()) == 990162


def _load_benchmark(repo_dir):
    spec = importlib.util.spec_from_file_location("raft_translation", repo_dir / "benchmarks" / "raft_translation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.shared
@pytest.mark.slow
def test_converted_raft_small_recovers_a_known_translation(shared_dir, repo_dir, tmp_path, monkeypatch):
    """Import the real checkpoint offline, resolve it as `--flow raft-small` would, and check the
    flow of a translated DAVIS frame (a crop, for speed) against the known shift."""
    bench = _load_benchmark(repo_dir)
    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path / "cache"))
    import_weights("raft-small.things", shared_dir / "weights" / "raft-small.pth")
    resolved = resolve_weights("raft-small.things", offline=True)
    assert resolved.resolved_by == "cache" and resolved.pinned
    net = raft_small()
    load_into(net, resolved.state_dict())
    net.eval()
    bgr = cv2.imread(str(shared_dir / "data" / "davis16-480p" / "JPEGImages" / "480p" / "bear" / "00000.jpg"))
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[112:368, 200:584]  # 256 x 384, the bear and its surroundings
    res = bench.translation_epe(net, image, 3.0, -2.0, margin=16)
    print(json.dumps(res))
    assert res["mean_epe"] < 0.2
    # A conversion that puts a tensor in the wrong place is caught by the same measurement.
    broken = resolved.state_dict()
    a, b = "update_block.recurrent_block.convgru1.convz.weight", "update_block.recurrent_block.convgru1.convr.weight"
    broken[a], broken[b] = broken[b], broken[a]
    load_into(net, broken)
    assert bench.translation_epe(net, image, 3.0, -2.0, margin=16)["mean_epe"] > 0.5


# ----------------------------------------------------------------------------------------------
# AGSS-VOS / RGMP module trees (names as in dvlab-research/AGSS-VOS networks/agssvos.py and
# seoungwugoh/RGMP model.py), at a reduced width so the test is fast.
# ----------------------------------------------------------------------------------------------


def _stage(cin: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    down = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
    return nn.Sequential(Bottleneck(cin, planes, stride, down), *[Bottleneck(planes * 4, planes) for _ in range(blocks - 1)])


def _refine(cin: int, mdim: int) -> nn.Module:
    rf = nn.Module()
    rf.convFS1 = nn.Conv2d(cin, mdim, 3, padding=1)
    for n in ("convFS2", "convFS3", "convMM1", "convMM2"):
        setattr(rf, n, nn.Conv2d(mdim, mdim, 3, padding=1))
    return rf


def _official_vos(c: int, mdim: int, *, agss: bool) -> dict[str, torch.Tensor]:
    """State dict named like the official AGSS-VOS (agss=True, with 'seg'/'flow') or RGMP checkpoint."""
    enc = nn.Module()
    enc.conv1_p = nn.Conv2d(1, c, 7, 2, 3)
    enc.conv1 = nn.Conv2d(3, c, 7, 2, 3, bias=False)
    enc.bn1 = nn.BatchNorm2d(c)
    cin = c
    for i, (planes, blocks) in enumerate(zip((c, 2 * c, 4 * c, 8 * c), (3, 4, 6, 3))):
        setattr(enc, f"res{i + 2}", _stage(cin, planes, blocks, 1 if i == 0 else 2))
        cin = planes * 4
    dec = nn.Module()
    gc = dec.GC = nn.Module()
    gc.conv_l1, gc.conv_l2 = nn.Conv2d(8 * cin // 4, mdim, (7, 1)), nn.Conv2d(mdim, mdim, (1, 7))
    gc.conv_r1, gc.conv_r2 = nn.Conv2d(8 * cin // 4, mdim, (1, 7)), nn.Conv2d(mdim, mdim, (7, 1))
    dec.convG1, dec.convG2 = nn.Conv2d(mdim, mdim, 3), nn.Conv2d(mdim, mdim, 3)
    dec.RF4, dec.RF3, dec.RF2 = _refine(16 * c, mdim), _refine(8 * c, mdim), _refine(4 * c, mdim)
    heads = ("pred2",) if agss else ("pred5", "pred4", "pred3", "pred2")
    for h in heads:
        setattr(dec, h, nn.Conv2d(mdim, 2, 3))
    if agss:
        enc.atn = nn.Sequential(nn.Conv2d(4 * c + 1, mdim, 1), nn.ReLU(), nn.Conv2d(mdim, mdim, 3), nn.ReLU(), nn.Conv2d(mdim, mdim, 3, 2))
    else:
        enc.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        enc.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    top = nn.Module()
    top.module = nn.Module()
    top.module.Encoder, top.module.Decoder = enc, dec
    # PyTorch 0.4.0 (AGSS-VOS) and 0.3.1 (RGMP) saved no BatchNorm counters.
    seg = {k: v.normal_() if v.is_floating_point() else v for k, v in top.state_dict().items() if not k.endswith("num_batches_tracked")}
    if not agss:
        return seg
    flow = {"flow.conv1.0.weight": torch.randn(64, 6, 7, 7), "flow.corr_deconv.weight": torch.randn(2, 2, 4, 4)}
    return {**{f"seg.{k}": v for k, v in seg.items()}, **flow}


def _tiny_agss():
    from vostool.models import create_method

    return create_method("agss", depth=50, base_width=8, mdim=16).net


def test_agss_official_checkpoint_converts_strictly(tmp_path):
    sd = _official_vos(8, 16, agss=True)
    torch.save(
        {
            "seg": {k[4:]: v for k, v in sd.items() if k.startswith("seg.")},
            "flow": {k[5:]: v for k, v in sd.items() if k.startswith("flow.")},
        },
        tmp_path / "model_199.pth",
    )
    loaded = load_state_dict(tmp_path / "model_199.pth")
    assert detect_layout(loaded) == "agss-original"
    conv = convert_agss_original(loaded)
    net = _tiny_agss()
    load_into(net, conv.state_dict)
    got = net.state_dict()
    for a, b in [
        ("seg.module.Encoder.res3.1.conv2.weight", "encoder.layer2.1.conv2.weight"),
        ("seg.module.Encoder.res5.0.downsample.1.running_mean", "encoder.layer4.0.downsample.1.running_mean"),
        ("seg.module.Encoder.atn.4.bias", "encoder.atn.4.bias"),
        ("seg.module.Encoder.conv1_p.weight", "encoder.conv1_p.weight"),
        ("seg.module.Decoder.GC.conv_r1.weight", "decoder.GC.conv_r1.weight"),
        ("seg.module.Decoder.RF2.convMM2.weight", "decoder.RF2.convMM2.weight"),
        ("seg.module.Decoder.pred2.bias", "decoder.pred2.bias"),
    ]:
        assert torch.equal(loaded[a], got[b]), (a, b)
    # Every segmentation tensor is used exactly once; the FlowNet2-C part is reported, not used.
    seg_ids = {id(v) for k, v in loaded.items() if k.startswith("seg.")}
    assert {id(v) for k, v in conv.state_dict.items() if not k.endswith("num_batches_tracked")} == seg_ids
    assert [len(v) for v in conv.unused.values()] == [2] and "FlowNet2-C" in next(iter(conv.unused))
    assert conv.added and all(k.endswith("num_batches_tracked") for k in conv.added)


def test_rgmp_weights_initialise_the_shared_parts(tmp_path):
    sd = _official_vos(8, 16, agss=False)
    assert detect_layout(sd) == "rgmp-original"
    conv = convert_rgmp_original(sd)
    net = _tiny_agss()
    atn_before = net.encoder.atn[0].weight.clone()
    with pytest.raises(WeightsError, match=r"missing: encoder\.atn"):
        load_into(net, conv.state_dict)
    init, keep = rgmp_init_for("agss", conv.state_dict)
    assert keep == ("encoder.atn.",)
    load_into(net, init, allow_missing=keep)
    assert torch.equal(net.encoder.layer3[5].conv3.weight, sd["module.Encoder.res4.5.conv3.weight"])
    assert torch.equal(net.decoder.RF4.convFS1.weight, sd["module.Decoder.RF4.convFS1.weight"])
    assert torch.equal(net.encoder.atn[0].weight, atn_before)
    unused = {k: len(v) for k, v in conv.unused.items()}
    assert sorted(unused.values()) == [2, 6]  # mean/std; pred5/4/3 weight+bias
    with pytest.raises(WeightsError, match="not an official AGSS"):
        convert("agss-original", sd)


def test_rgmp_weights_initialise_savos_encoder_and_global_convolution():
    from vostool.models import create_method

    sd = _official_vos(8, 16, agss=False)
    init, keep = rgmp_init_for("savos", convert_rgmp_original(sd).state_dict)
    net = create_method("savos", depth=50, base_width=8, mdim=16, reduction=4).net
    pred_before = net.pred.weight.clone()
    load_into(net, init, allow_missing=keep)
    assert torch.equal(net.encoder.layer1[0].downsample[0].weight, sd["module.Encoder.res2.0.downsample.0.weight"])
    assert torch.equal(net.GC.conv_l2.weight, sd["module.Decoder.GC.conv_l2.weight"])
    assert torch.equal(net.pred.weight, pred_before)
    with pytest.raises(WeightsError, match="not 'ovsnet'"):
        rgmp_init_for("ovsnet", init)


def test_agss_converter_rejects_unknown_keys():
    sd = _official_vos(8, 16, agss=True)
    with pytest.raises(WeightsError, match="no place in vostool's AGSS"):
        convert_agss_original({**sd, "seg.module.Decoder.pred3.weight": torch.zeros(2, 16, 3, 3)})
