"""One right line for each kind of broken weights file: damaged, foreign, or code-carrying."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from vostool.errors import WeightsError
from vostool.weights import load_state_dict, save_state_dict
from vostool.weights.serialization import read_safetensors_metadata


def _one_line(err: pytest.ExceptionInfo[WeightsError]) -> str:
    text = str(err.value)
    assert "\n" not in text and "SafetensorError" not in text and "Weights only load failed" not in text
    return text


@pytest.mark.parametrize("keep", [-100, 40, 5])  # data cut, header cut, header length cut
def test_truncated_safetensors_is_damaged(tmp_path, keep) -> None:
    p = tmp_path / "w.safetensors"
    save_state_dict(p, {"a": torch.randn(64, 64)}, {"arch": "{}"})
    p.write_bytes(p.read_bytes()[:keep])
    for load in (load_state_dict, read_safetensors_metadata):
        with pytest.raises(WeightsError) as err:
            load(p)
        assert "is damaged or incomplete" in _one_line(err) and "delete it and pull or import it again" in str(err.value)


def test_safetensors_metadata_is_read(tmp_path) -> None:
    p = tmp_path / "w.safetensors"
    save_state_dict(p, {"a": torch.zeros(2)}, {"arch": '{"k": 1}'})
    assert read_safetensors_metadata(p) == {"arch": '{"k": 1}'}


def test_truncated_pth_checkpoints_are_damaged(tmp_path) -> None:
    full = tmp_path / "full.pth"
    torch.save({"a": torch.randn(100, 100)}, full)
    legacy = tmp_path / "legacy.pth"
    torch.save({"a": torch.randn(100, 100)}, legacy, _use_new_zipfile_serialization=False)
    for src in (full, legacy):
        cut = tmp_path / f"cut-{src.name}"
        cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
        with pytest.raises(WeightsError) as err:
            load_state_dict(cut)
        assert "is damaged or incomplete" in _one_line(err)


@pytest.mark.parametrize("head", [b"", b"\x80\x02"])  # random bytes, and random bytes that start like a pickle
def test_random_bytes_are_not_a_checkpoint(tmp_path, head) -> None:
    p = tmp_path / "model.pth"
    p.write_bytes(head + os.urandom(5000))
    with pytest.raises(WeightsError) as err:
        load_state_dict(p)
    text = _one_line(err)
    assert "not a PyTorch checkpoint" in text and "safely" not in text


def test_text_file_is_not_a_checkpoint(tmp_path) -> None:
    p = tmp_path / "notes.pth"
    p.write_text("hello")
    with pytest.raises(WeightsError) as err:
        load_state_dict(p)
    assert "not a PyTorch checkpoint" in _one_line(err)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("protocol", [2, 4])  # torch's unpickler names the global; protocol 4 it cannot parse at all
def test_pickle_with_code_names_what_it_would_run(tmp_path, protocol) -> None:
    p = tmp_path / "evil.pth"
    with open(p, "wb") as f:
        pickle.dump({"w": _Exploit()}, f, protocol=protocol)
    with pytest.raises(WeightsError) as err:
        load_state_dict(p)
    text = _one_line(err)
    assert "cannot be loaded safely" in text and "system" in text


def test_loading_prints_nothing(tmp_path, capfd) -> None:
    p = tmp_path / "odd.pth"
    p.write_bytes(b"\x80\xb2" + os.urandom(3000))  # the unpickler warns about the protocol byte
    with pytest.raises(WeightsError):
        load_state_dict(p)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
