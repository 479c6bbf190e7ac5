"""Safe loading (no code execution), atomic safetensors writes, strict loading."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

from vostool.errors import WeightsError
from vostool.weights import load_into, load_state_dict, save_state_dict, sha256_file


class _Exploit:
    """Pickles to a call of os.system: loading it would run a shell command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pth_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pth"
    with open(bad, "wb") as f:
        pickle.dump({"w": _Exploit(str(marker))}, f, protocol=2)
    torch.save({"w": torch.ones(2), "evil": _Exploit(str(marker))}, tmp_path / "bad_zip.pth")
    for path in (bad, tmp_path / "bad_zip.pth"):
        with pytest.raises(WeightsError, match="cannot be loaded safely"):
            load_state_dict(path)
    assert not marker.exists()


def test_nested_checkpoint_is_flattened_and_non_tensors_dropped(tmp_path):
    p = tmp_path / "ckpt.pth"
    torch.save({"seg": {"module.a.weight": torch.arange(3.0)}, "flow": {"conv.bias": torch.ones(1)}, "epoch": 7}, p)
    sd = load_state_dict(p)
    assert set(sd) == {"seg.module.a.weight", "flow.conv.bias"}
    assert torch.equal(sd["seg.module.a.weight"], torch.arange(3.0))


def test_safetensors_roundtrip_atomic_and_shared_storage(tmp_path):
    base = torch.randn(4, 4)
    sd = {"a": base, "b": base[:2], "c": torch.zeros((), dtype=torch.long)}  # b shares a's storage
    p = tmp_path / "sub" / "w.safetensors"
    save_state_dict(p, sd, {"note": "x"})
    back = load_state_dict(p)
    assert set(back) == {"a", "b", "c"} and torch.equal(back["b"], base[:2]) and back["c"].dtype == torch.long
    assert [f.name for f in p.parent.iterdir()] == ["w.safetensors"]  # no temp left behind
    # A failing write leaves the previous file untouched.
    before = sha256_file(p)
    with pytest.raises(Exception):
        save_state_dict(p, {"x": object()})  # type: ignore[dict-item]
    assert sha256_file(p) == before and [f.name for f in p.parent.iterdir()] == ["w.safetensors"]


def test_truncated_and_foreign_files_give_one_line_errors(tmp_path):
    p = tmp_path / "w.safetensors"
    save_state_dict(p, {"a": torch.randn(64, 64)})
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="damaged or incomplete"):
        load_state_dict(p)
    q = tmp_path / "notes.pth"
    q.write_text("hello")
    with pytest.raises(WeightsError) as err:
        load_state_dict(q)
    assert "\n" not in str(err.value)
    with pytest.raises(WeightsError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pth")


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def test_load_into_is_strict_and_names_keys():
    src = _net()
    for p in src.parameters():
        nn.init.normal_(p)
    sd = src.state_dict()
    dst = _net()
    load_into(dst, sd)
    assert all(torch.equal(a, b) for a, b in zip(dst.state_dict().values(), sd.values()))

    missing = {k: v for k, v in sd.items() if k != "2.bias"}
    with pytest.raises(WeightsError, match=r"1 missing: 2\.bias"):
        load_into(_net(), missing)
    extra = {**sd, "3.weight": torch.zeros(1)}
    with pytest.raises(WeightsError, match=r"1 unexpected: 3\.weight"):
        load_into(_net(), extra)
    wrong = {**sd, "0.weight": torch.zeros(4, 3, 5, 5)}
    with pytest.raises(WeightsError, match=r"0\.weight \(4, 3, 5, 5\) vs \(4, 3, 3, 3\)"):
        load_into(_net(), wrong)
    # Nothing was loaded by the failed calls.
    fresh = _net()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(WeightsError):
        load_into(fresh, wrong)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())


def test_load_into_allow_missing_keeps_own_values_for_listed_prefix_only():
    sd = {k: v for k, v in _net().state_dict().items() if not k.startswith("2.")}
    dst = _net()
    own = dst.state_dict()["2.weight"].clone()
    load_into(dst, sd, allow_missing=("2.",))
    assert torch.equal(dst.state_dict()["2.weight"], own)
    with pytest.raises(WeightsError, match="missing"):
        load_into(_net(), sd, allow_missing=("1.",))
