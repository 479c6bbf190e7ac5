"""Small realistic test videos made on the fly: textured objects moving over a textured
background, with their exact ground-truth masks."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import cv2
import numpy as np
import torch

if TYPE_CHECKING:
    from vostool.inference.session import Session, StepResult
    from vostool.models import VOSMethod


def texture(h: int, w: int, rng: np.random.Generator, scale: float = 3.0) -> np.ndarray:
    """Smooth random colour texture ``(H, W, 3)`` uint8 (enough structure for optical flow)."""
    noise = rng.random((h, w, 3)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), scale)
    tex = (tex - tex.min()) / (tex.max() - tex.min() + 1e-6)
    return (tex * 255).astype(np.uint8)


def moving_objects(n: int = 12, h: int = 96, w: int = 128, objects: int = 2, seed: int = 0, speed: float = 2.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` frames ``(H, W, 3)`` uint8 and index masks ``(H, W)`` uint8 of ``objects`` textured
    ellipses moving at ``speed`` px/frame over a slowly panning textured background."""
    rng = np.random.default_rng(seed)
    bg = texture(h + 40, w + 40, rng)
    sprites = []
    for k in range(objects):
        ry, rx = int(h * 0.14) + 3 * k, int(w * 0.12) + 2 * k
        tex = texture(2 * ry + 1, 2 * rx + 1, rng, 2.5)
        tex[..., k % 3] = (tex[..., k % 3].astype(np.int16) // 2 + 128).astype(np.uint8)  # tinted, still textured
        shape = np.zeros((2 * ry + 1, 2 * rx + 1), np.uint8)
        cv2.ellipse(shape, (rx, ry), (rx, ry), 0, 0, 360, 1, -1)
        start = np.array([h * (0.3 + 0.35 * k), w * (0.25 + 0.4 * (k % 2))])
        vel = np.array([speed * (0.5 - k % 2), speed * (1 if k % 2 == 0 else -0.7)])
        sprites.append((tex, shape.astype(bool), start, vel))
    frames, masks = [], []
    for t in range(n):
        ox = int(round(t * 0.5)) % 40
        img = bg[20 : 20 + h, ox : ox + w].copy()
        ids = np.zeros((h, w), np.uint8)
        for k, (tex, shape, start, vel) in enumerate(sprites):
            sh, sw = shape.shape
            lo = np.array([sh // 2, sw // 2], float)
            span = np.array([h - sh, w - sw], float).clip(1)
            pos = np.abs((start - lo + vel * t) % (2 * span) - span)  # bounce off the borders
            cy, cx = (lo + span - pos).round().astype(int)
            y0, x0 = cy - sh // 2, cx - sw // 2
            ys, xs = slice(max(y0, 0), min(y0 + sh, h)), slice(max(x0, 0), min(x0 + sw, w))
            sub = shape[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
            img[ys, xs][sub] = tex[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0][sub]
            ids[ys, xs][sub] = k + 1
        frames.append(img)
        masks.append(ids)
    return frames, masks


def write_folder(path: Path, frames: list[np.ndarray], pattern: str = "{:05d}.jpg") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(path / pattern.format(i)), cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def write_mp4(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    gen = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264", quality=None, macro_block_size=1,
                                      output_params=["-crf", "12", "-preset", "ultrafast"], ffmpeg_log_level="error")
    gen.send(None)
    for f in frames:
        gen.send(np.ascontiguousarray(f))
    gen.close()
    return path


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


# Helpers shared by the method tests (tests/test_models_*.py).


def moving_discs(n_frames: int, h: int, w: int, k: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A blocky textured background with ``k`` flat-coloured discs moving right 2 px/frame:
    ``(H, W, 3)`` uint8 frames and ``(H, W)`` uint8 id maps (0 = background, 1..k)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (rng.random((h // 4 + 1, w // 4 + 1, 3)) * 120 + 60).repeat(4, 0).repeat(4, 1)[:h, :w]
    colours = rng.integers(0, 255, (k, 3))
    frames, ids = [], []
    for t in range(n_frames):
        img, lab = base.copy(), np.zeros((h, w), np.uint8)
        for i in range(k):
            cy, cx, r = h * (i + 1) / (k + 1), w * 0.25 + 2 * t + 3 * i, min(h, w) / (2.5 * k + 2)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            img[disc], lab[disc] = colours[i], i + 1
        frames.append(img.astype(np.uint8))
        ids.append(lab)
    return frames, ids


def without(ids: np.ndarray, *object_ids: int) -> np.ndarray:
    """A copy of the ``(H, W)`` id map with ``object_ids`` set to background."""
    out = ids.copy()
    out[np.isin(out, object_ids)] = 0
    return out


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


def first_frame_state(method: VOSMethod, frame: np.ndarray, ids: np.ndarray, k: int) -> dict:
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
