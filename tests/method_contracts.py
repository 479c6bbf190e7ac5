"""What every segmentation method must do, as assertions the method tests share
(tests/test_models_*.py), and the helpers that drive a method the way the session does."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from synthetic_videos import without

if TYPE_CHECKING:
    from vostool.inference.session import Session, StepResult
    from vostool.models import MethodState, VOSMethod


def to_inputs(frame: np.ndarray, ids: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A method's inputs: ``(1, 3, H, W)`` image in [0, 1] and ``(k + 1, H, W)`` one-hot
    probabilities over [background, 1..k]."""
    image = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    prob = torch.stack([torch.from_numpy(ids == i).float() for i in range(k + 1)])
    return image, prob


def tiny_method(name: str, seed: int = 0, **kwargs: Any) -> VOSMethod:
    """Method ``name``'s registered tiny variant (``kwargs`` override), random-init with ``seed``, in eval mode."""
    from vostool.models import create_method

    torch.manual_seed(seed)
    return create_method(name, variant="tiny", **kwargs).eval()


def first_frame_state(method: VOSMethod, frame: np.ndarray, ids: np.ndarray, k: int) -> MethodState:
    """A new state holding objects 1..k of the first frame, as the session makes it (memorize, then update)."""
    image, prob = to_inputs(frame, ids, k)
    state = method.init_state()
    method.memorize(state, image, prob, list(range(1, k + 1)))
    method.update(state, image, prob)
    return state


def assert_probabilities(prob: torch.Tensor, k: int, hw: tuple[int, int]) -> None:
    """``prob`` is a float32 ``(k + 1, H, W)`` distribution over [background, objects] at every pixel."""
    assert prob.shape == (k + 1, *hw) and prob.dtype == torch.float32
    assert (prob >= 0).all()
    torch.testing.assert_close(prob.sum(0), torch.ones(hw))


def propagate_with_late_object(session: Session, frames: list[np.ndarray], ids: list[np.ndarray]) -> list[StepResult]:
    """Runs ``session`` over a clip of three objects (4 frames or more) where object 3 is first given on
    frame 2, and checks what every method must give: the objects of each frame, the given pixels
    kept on frame 2, probabilities on frame 3. Returns the step results."""
    hw = ids[0].shape
    results = list(session.propagate(frames[:4], {0: without(ids[0], 3), 2: ids[2]}))
    assert [r.object_ids for r in results] == [[1, 2], [1, 2], [1, 2, 3], [1, 2, 3]]
    assert all(r.ids.shape == hw for r in results)
    given = ids[2] > 0  # pixels given on frame 2 keep their ids; the rest is predicted
    assert np.array_equal(results[2].ids[given], ids[2][given])
    assert_probabilities(results[3].prob, 3, hw)
    return results


def assert_session_resumes(make_session: Callable[[], Session], frames: list[np.ndarray], ids: list[np.ndarray], split: int = 3) -> None:
    """A session checkpointed after ``split`` frames and loaded into a new session goes on with the
    same probabilities as one uninterrupted run (the method's state survives the checkpoint)."""
    expected = [r.prob for r in make_session().propagate(frames, {0: ids[0]})]
    first = make_session()
    for t in range(split):
        first.step(frames[t], ids[0] if t == 0 else None)
    checkpoint = io.BytesIO()
    torch.save(first.state_dict(), checkpoint)  # as a resume checkpoint: plain data, no pickled classes
    checkpoint.seek(0)
    resumed = make_session()
    resumed.load_state_dict(torch.load(checkpoint, weights_only=True))
    for t in range(split, len(frames)):
        torch.testing.assert_close(resumed.step(frames[t]).prob, expected[t])


def fp32_and_bf16(make_method: Callable[[], VOSMethod], run: Callable[[VOSMethod], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``run(method)`` in inference mode on a fresh ``make_method()`` in fp32, then on another under
    CPU bf16 autocast with channels-last weights; returns both results."""
    results = []
    for bf16 in (False, True):
        method = make_method().to("cpu", channels_last=bf16)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            results.append(run(method))
    return results[0], results[1]


def assert_gradients_reach(named_parameters: Iterable[tuple[str, torch.Tensor]], more_than: int) -> None:
    """There are more than ``more_than`` parameters and each one got a non-zero gradient."""
    params = list(named_parameters)
    assert len(params) > more_than
    assert [n for n, p in params if p.grad is None or not p.grad.abs().sum() > 0] == []


def train_steps(net: Any, recipe: Any, batch: Any, steps: int, lr: float = 2e-3) -> tuple[list[float], list[dict]]:
    """``steps`` Adam steps of ``recipe.loss`` on one fixed batch: the losses and stats of each."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses, stats = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss, st = recipe.loss(net, batch)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        stats.append(st)
    return losses, stats
