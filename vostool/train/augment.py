"""Clip augmentations (numpy, uint8) and "lucid dream" synthesis of training videos.

Every function takes a :class:`~vostool.train.sampling.Clip` (``images (L, H, W, 3)`` uint8,
``labels (L, H, W)`` uint8 with 255 = void) and an ``np.random.Generator`` and returns a new
clip; geometry is applied identically to images (bilinear) and labels (nearest).

* :func:`hflip`, :func:`reverse` — AGSS-VOS's two augmentations.
* :func:`random_crop`, :func:`random_affine` (scale + rotation + shift) — the embedding
  method's crops, rotation and scaling; :func:`random_illumination` (gain, gamma, colour).
* :func:`paste_object` — a second annotated object cut from another training clip and moved
  over this one (copy-paste), so a clip of a one-object dataset holds two objects that only
  their masks tell apart.
* :func:`lucid_dream_clip` — SAVOS's training data: a whole clip synthesised from ONE annotated
  frame in the manner of Lucid Data Dreaming (Khoreva et al., 2017): the frame is split into
  background (objects removed and inpainted) and per-object cut-outs; each synthesised frame
  moves every object with its own affine motion (translation, scale, rotation), moves the camera
  (an affine of the whole scene), recomposes objects over the background in a random depth order
  (so they may occlude each other), and changes the illumination (gain, gamma, colour shift).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..io.masks import VOID_ID
from .sampling import Clip, relabel_clip


def hflip(clip: Clip) -> Clip:
    """Mirror every frame horizontally."""
    return Clip(np.ascontiguousarray(clip.images[:, :, ::-1]), np.ascontiguousarray(clip.labels[:, :, ::-1]), clip.num_objects, clip.name)


def reverse(clip: Clip) -> Clip:
    """Play the clip backwards (objects renumbered so ids stay those of the new first frame)."""

    labels, k = relabel_clip(np.ascontiguousarray(clip.labels[::-1]))
    return Clip(np.ascontiguousarray(clip.images[::-1]), labels, k, clip.name)


def random_crop(clip: Clip, size: tuple[int, int], rng: np.random.Generator, *, tries: int = 5) -> Clip:
    """Crop the same ``size = (h, w)`` window from every frame (padding with void if smaller).

    Up to ``tries`` windows are drawn; the first whose first frame keeps some of every object is
    used (else the last one drawn).
    """
    h, w = size
    L, H, W = clip.labels.shape
    images, labels = clip.images, clip.labels
    if H < h or W < w:
        ph, pw = max(h - H, 0), max(w - W, 0)
        images = np.pad(images, ((0, 0), (0, ph), (0, pw), (0, 0)))
        labels = np.pad(labels, ((0, 0), (0, ph), (0, pw)), constant_values=VOID_ID)
        H, W = labels.shape[1:]
    y = x = 0
    for _ in range(tries):
        y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        win = labels[0, y : y + h, x : x + w]
        if all((win == k).any() for k in range(1, clip.num_objects + 1)):
            break
    return Clip(
        np.ascontiguousarray(images[:, y : y + h, x : x + w]),
        np.ascontiguousarray(labels[:, y : y + h, x : x + w]),
        clip.num_objects,
        clip.name,
    )


def _warp(img: np.ndarray, mat: np.ndarray, size: tuple[int, int], *, nearest: bool, border: int | tuple[int, ...]) -> np.ndarray:
    return cv2.warpAffine(
        img,
        mat,
        (size[1], size[0]),
        flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT if nearest else cv2.BORDER_REFLECT_101,
        borderValue=border,
    )


def affine_matrix(center: tuple[float, float], angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """``(2, 3)`` affine: rotate by ``angle_deg`` and scale about ``center`` (x, y), then shift."""
    m = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), float(angle_deg), float(scale))
    m[:, 2] += np.asarray(shift, dtype=np.float64)
    return m


def random_affine(
    clip: Clip,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.8, 1.2),
    rotation: float = 15.0,
    shift: float = 0.1,
    per_frame_jitter: float = 0.0,
) -> Clip:
    """Scale, rotate and shift every frame with one random affine (plus optional per-frame jitter).

    Args:
        scale: range of the zoom factor.
        rotation: maximum rotation in degrees (uniform in ``[-rotation, rotation]``).
        shift: maximum translation as a fraction of the frame size.
        per_frame_jitter: extra independent motion per frame, as a fraction of the above ranges
            (the embedding method trains on clips whose frames move relative to each other).

    Pixels brought in from outside the frame are void in the labels (not scored by the losses)
    and reflected in the images.
    """
    L, H, W = clip.labels.shape
    s0 = float(rng.uniform(*scale))
    a0 = float(rng.uniform(-rotation, rotation))
    t0 = rng.uniform(-shift, shift, size=2) * (W, H)
    images, labels = np.empty_like(clip.images), np.empty_like(clip.labels)
    for t in range(L):
        j = per_frame_jitter
        s = s0 * (1.0 + j * float(rng.uniform(-1, 1)) * (scale[1] - scale[0]) / 2) if j else s0
        a = a0 + (j * float(rng.uniform(-rotation, rotation)) if j else 0.0)
        tt = t0 + (j * rng.uniform(-shift, shift, size=2) * (W, H) if j else 0.0)
        m = affine_matrix((W / 2, H / 2), a, s, (float(tt[0]), float(tt[1])))
        images[t] = _warp(clip.images[t], m, (H, W), nearest=False, border=0)
        labels[t] = _warp(clip.labels[t], m, (H, W), nearest=True, border=VOID_ID)
    return Clip(images, labels, clip.num_objects, clip.name)


def _illumination_params(rng: np.random.Generator, strength: float) -> tuple[float, float, float, float, float]:
    gain = float(np.exp(rng.uniform(-strength, strength)))
    gamma = float(np.exp(rng.uniform(-strength, strength)))
    cr, cg, cb = (float(np.exp(v)) for v in rng.uniform(-strength / 2, strength / 2, size=3))
    return gain, gamma, cr, cg, cb


def _apply_illumination(img: np.ndarray, gain: float, gamma: float, cr: float, cg: float, cb: float) -> np.ndarray:
    x = img.astype(np.float32) / 255.0
    x = np.power(np.clip(x, 0, 1), gamma) * gain * np.array([cr, cg, cb], np.float32)
    return (np.clip(x, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def random_illumination(clip: Clip, rng: np.random.Generator, strength: float = 0.2) -> Clip:
    """One random lighting change (gain, gamma, per-channel colour, each up to ``exp(+-strength)``)
    applied to every frame of the clip."""
    params = _illumination_params(rng, strength)
    images = np.stack([_apply_illumination(im, *params) for im in clip.images])
    return Clip(images, clip.labels, clip.num_objects, clip.name)


def paste_object(clip: Clip, donor: Clip, rng: np.random.Generator, *, scale: tuple[float, float] = (0.4, 0.9), shift: float = 0.3) -> Clip:
    """Paste the first object of ``donor`` (another clip of the same length, any size) over every
    frame of ``clip`` as object ``K + 1``, after one random zoom / rotation / shift of the donor.

    The cut-out's edge is feathered over a pixel or two in the images; the labels are hard (the
    pasted object occludes what it covers). The pasted object is in frame 0 only if it lands
    inside the frame there; otherwise the caller's relabelling makes it background.
    """
    L, H, W = clip.labels.shape
    if len(donor) != L or donor.num_objects < 1 or clip.num_objects >= VOID_ID - 1:
        return clip
    if donor.labels.shape[1:] != (H, W):
        images = np.stack([cv2.resize(im, (W, H), interpolation=cv2.INTER_LINEAR) for im in donor.images])
        labels = np.stack([cv2.resize(lab, (W, H), interpolation=cv2.INTER_NEAREST) for lab in donor.labels])
        donor = Clip(images, labels, donor.num_objects, donor.name)
    donor = random_affine(donor, rng, scale=scale, rotation=10.0, shift=shift)
    images, labels = clip.images.copy(), clip.labels.copy()
    k = clip.num_objects + 1
    for t in range(L):
        m = donor.labels[t] == 1
        if not m.any():
            continue
        alpha = cv2.GaussianBlur(m.astype(np.float32), (3, 3), 0)[..., None]
        images[t] = (alpha * donor.images[t] + (1.0 - alpha) * images[t] + 0.5).astype(np.uint8)
        labels[t][m] = k
    return Clip(images, labels, k, clip.name)


# --------------------------------------------------------------------------------------------
# lucid dreaming


def _smooth_path(rng: np.random.Generator, length: int, magnitude: float) -> np.ndarray:
    """A smooth random 1-D trajectory of ``length`` values starting at 0 (cumulative, eased)."""
    end = rng.uniform(-magnitude, magnitude)
    mid = rng.uniform(-magnitude, magnitude) * 0.5
    t = np.linspace(0.0, 1.0, length)
    return end * t + mid * np.sin(math.pi * t)


def lucid_dream_clip(
    image: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    length: int = 2,
    object_motion: float = 0.08,
    object_scale: float = 0.15,
    object_rotation: float = 10.0,
    camera_motion: float = 0.05,
    camera_scale: float = 0.08,
    camera_rotation: float = 5.0,
    illumination: float = 0.25,
    keep_first: bool = True,
    name: str = "lucid",
) -> Clip:
    """Synthesise a ``length``-frame clip from one annotated frame (Lucid Data Dreaming).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        labels: ``(H, W)`` uint8 ids (0 background, 255 void).
        rng: random generator.
        length: frames to produce.
        object_motion / object_scale / object_rotation: per-object motion reached at the last
            frame (fraction of the frame size, relative zoom, degrees).
        camera_motion / camera_scale / camera_rotation: the same for the whole scene.
        illumination: strength of the per-frame lighting change.
        keep_first: frame 0 is the original (the reference frame keeps its real appearance).

    Returns:
        A :class:`Clip` whose labels follow the moved objects (ids renumbered 1..K, occluded parts
        removed, void where the camera brought in unseen pixels).
    """

    H, W = labels.shape
    ids = [int(v) for v in np.unique(labels) if v not in (0, VOID_ID)]
    fg = (labels != 0) & (labels != VOID_ID)
    # Foreground/background split: remove the objects and inpaint the hole.
    hole = cv2.dilate(fg.astype(np.uint8), np.ones((7, 7), np.uint8))
    background = cv2.inpaint(image, hole, 5, cv2.INPAINT_TELEA) if hole.any() else image.copy()
    # Per-object motion paths and one camera path (all reach their full value at the last frame).
    obj_paths = {
        oid: (
            _smooth_path(rng, length, object_motion * W),
            _smooth_path(rng, length, object_motion * H),
            np.exp(_smooth_path(rng, length, object_scale)),
            _smooth_path(rng, length, object_rotation),
        )
        for oid in ids
    }
    cam = (
        _smooth_path(rng, length, camera_motion * W),
        _smooth_path(rng, length, camera_motion * H),
        np.exp(_smooth_path(rng, length, camera_scale)),
        _smooth_path(rng, length, camera_rotation),
    )
    light0 = (1.0, 1.0, 1.0, 1.0, 1.0)
    light1 = _illumination_params(rng, illumination)
    images = np.empty((length, H, W, 3), np.uint8)
    out_labels = np.empty((length, H, W), np.uint8)
    for t in range(length):
        if t == 0 and keep_first:
            images[0], out_labels[0] = image, labels
            continue
        order = list(ids)
        rng.shuffle(order)  # recomposition in a random depth order: later objects are in front
        canvas = background.copy()
        lab = np.where(labels == VOID_ID, VOID_ID, 0).astype(np.uint8)
        for oid in order:
            m = (labels == oid).astype(np.uint8)
            ys, xs = np.nonzero(m)
            cx, cy = float(xs.mean()), float(ys.mean())
            dx, dy, sc, rot = (p[t] for p in obj_paths[oid])
            mat = affine_matrix((cx, cy), rot, sc, (dx, dy))
            moved = _warp(image, mat, (H, W), nearest=False, border=0)
            mm = _warp(m, mat, (H, W), nearest=True, border=0).astype(bool)
            canvas[mm] = moved[mm]
            lab[mm] = oid
        dx, dy, sc, rot = (p[t] for p in cam)
        cmat = affine_matrix((W / 2, H / 2), rot, sc, (dx, dy))
        canvas = _warp(canvas, cmat, (H, W), nearest=False, border=0)
        lab = _warp(lab, cmat, (H, W), nearest=True, border=VOID_ID)
        f = t / max(length - 1, 1)
        light = tuple(a + (b - a) * f for a, b in zip(light0, light1))
        images[t] = _apply_illumination(canvas, *light)
        out_labels[t] = lab
    out, k = relabel_clip(out_labels)
    return Clip(images, out, k, name)
