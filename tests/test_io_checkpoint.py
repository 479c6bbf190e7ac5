"""Resume checkpoints in both formats: torch's for tensors, numpy's (no torch, no pickle) for arrays."""

from __future__ import annotations

import numpy as np
import torch

from vostool.io.checkpoint import load_state, save_state


def test_numpy_state_round_trips_without_pickle(tmp_path) -> None:
    state = {
        "session": {"index": 7, "prev_prob": np.random.rand(3, 4, 5).astype(np.float32), "input_size": [4, 5], "none": None},
        "timer": {"records": {"0": {"flow": 1.5}}, "names": {"0": "00000"}},
        "items": [np.arange(3, dtype=np.uint8), 2.5, "x"],
        "fingerprint": "abc",
    }
    path = save_state(tmp_path / "state", state)
    assert path.name == "state.npz"
    with np.load(path, allow_pickle=False) as z:  # readable without executing code
        assert "__layout__" in z.files
    back = load_state(tmp_path / "state")
    assert back["session"]["index"] == 7 and back["session"]["none"] is None and back["fingerprint"] == "abc"
    np.testing.assert_array_equal(back["session"]["prev_prob"], state["session"]["prev_prob"])
    np.testing.assert_array_equal(back["items"][0], state["items"][0])
    assert back["items"][1:] == [2.5, "x"] and back["timer"] == state["timer"]


def test_tensor_state_is_a_weights_only_torch_file_and_replaces_the_other_format(tmp_path) -> None:
    save_state(tmp_path / "state", {"a": np.zeros(2)})
    path = save_state(tmp_path / "state", {"a": torch.ones(2), "n": 3})
    assert path.name == "state.pt" and not (tmp_path / "state.npz").exists()
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert load_state(tmp_path / "state")["n"] == 3
    assert load_state(tmp_path / "other") is None
