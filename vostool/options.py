"""The options of vostool's commands: one dataclass per concern, built once and passed whole.

* :class:`RunOptions` — how a session segments: method, flow, weights, device, internal size,
  precision. Used by ``vostool segment``, ``vostool bench`` and :func:`vostool.create_session`.
* :class:`OutputOptions` — what ``vostool segment`` writes and what it does with a folder that
  already holds a run.
* :class:`TrainOptions` — what ``vostool train`` was asked to do (the run's stored settings are
  :class:`vostool.train.loop.TrainConfig`).

The CLI builds them with shared click option decorators (:mod:`vostool.cli.options`) whose
defaults are these fields' defaults; the Python API builds them from keyword arguments. This
module is plain data (no torch), so the CLI can use it before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

FLOW_NAMES = ("dis", "farneback", "raft-small", "raft-large")
"""Optical-flow backends (:func:`vostool.flow.create_flow`)."""

PRECISION_NAMES = ("fp32", "bf16", "fp16")
"""Network precisions (autocast dtypes in :data:`vostool.inference.session.PRECISIONS`)."""


@dataclass(frozen=True)
class RunOptions:
    """How a session segments a video.

    Attributes:
        method: registered method name (``flow``, ``agss``, ...).
        flow: flow backend (:data:`FLOW_NAMES`), or None for the method's default.
        weights: method weights: None (the manifest's default), an entry name, a file, or
            ``"random"`` (speed measurements only).
        flow_weights: RAFT weights: a file or an entry name (None: the manifest's default).
        offline: never download weights (None: ``VOSTOOL_OFFLINE`` / ``HF_HUB_OFFLINE``).
        device: ``auto``, ``cpu``, ``cuda[:i]`` or ``mps``.
        size: internal resolution (shorter side), or None for the input resolution.
        precision: one of :data:`PRECISION_NAMES` (CUDA autocast around the network).
        resize_mask: scale masks of another size to the video instead of failing.
        channels_last: channels-last network weights on CUDA (ignored elsewhere).
        compile: ``torch.compile`` the network.
        method_kwargs: builder keyword arguments (e.g. ``{"variant": "tiny"}``).
    """

    method: str = "flow"
    flow: str | None = None
    weights: str | None = None
    flow_weights: str | None = None
    offline: bool | None = None
    device: str = "auto"
    size: int | None = None
    precision: str = "fp32"
    resize_mask: bool = False
    channels_last: bool = True
    compile: bool = False
    method_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputOptions:
    """What a ``vostool segment`` run writes besides ``masks/`` and how it treats its folder.

    Attributes:
        overlay: write ``overlay.mp4``.
        overlay_frames: write ``overlays/<frame>.png``.
        soft: write ``soft/<id>/<frame>.png`` (probability x 255).
        mattes: write ``mattes/<id>/<frame>.png``.
        resume: finish the interrupted run in the folder.
        overwrite: replace the results already in the folder.
        checkpoint_every: frames between resume checkpoints.
        checkpoint_seconds: seconds between resume checkpoints.
        png_compression: zlib level of the PNGs (1: fast).
    """

    overlay: bool = True
    overlay_frames: bool = False
    soft: bool = False
    mattes: bool = False
    resume: bool = False
    overwrite: bool = False
    checkpoint_every: int = 100
    checkpoint_seconds: float = 60.0
    png_compression: int = 1


@dataclass(frozen=True)
class TrainOptions:
    """What ``vostool train`` was asked to do (see ``vostool train --help`` for each option).

    Network: ``method`` (one with a training recipe), ``variant`` (``paper`` / ``tiny``),
    ``depth``, ``base_width``, ``mdim``, ``freeze_bn``, ``init`` (weights to start from).
    Data: ``data_root``, ``size`` (frame height), ``synthetic`` (extra synthetic videos),
    ``val_split``, ``max_sequences``. Schedule: ``steps``, ``batch``, ``lr``, ``crop`` (``HxW``),
    ``seed``, ``tolerance``, ``ce_weight``, ``grad_clip``, ``bn_recalibrate``, ``flow``
    (``auto`` or a flow name), ``flow_weights``. Run: ``out``, ``resume``, ``device``,
    ``threads``, ``val_every``, ``checkpoint_every``, ``time_limit`` (minutes), ``export_path``,
    ``stop_at``.
    """

    out: Path
    method: str = "agss"
    data_root: Path | None = None
    steps: int | None = None
    batch: int = 1
    lr: float = 1e-4
    size: int = 240
    crop: str | None = None
    variant: str | None = None
    depth: int | None = None
    base_width: int | None = None
    mdim: int | None = None
    freeze_bn: bool = False
    seed: int = 0
    resume: bool = False
    device: str = "auto"
    threads: int | None = None
    val_split: str = "auto"
    val_every: int = 0
    checkpoint_every: int = 100
    synthetic: int = 0
    tolerance: float = 0.5
    ce_weight: float = 0.1
    grad_clip: float = 0.0
    flow: str = "auto"
    flow_weights: str | None = None
    init: str | None = None
    bn_recalibrate: int = 100
    time_limit: float | None = None
    export_path: Path | None = None
    stop_at: int | None = None
    max_sequences: int | None = None


T = TypeVar("T")


def default(cls: type[Any], name: str) -> Any:
    """The default of field ``name`` of options class ``cls`` (what the CLI shows and uses)."""
    f = cls.__dataclass_fields__[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def with_fields(options: T, fields: Mapping[str, Any]) -> tuple[T, dict[str, Any]]:
    """``(options with the given fields replaced, the fields that are not options of it)``."""
    names = {f.name for f in dataclasses.fields(options)}  # type: ignore[arg-type]
    mine = {k: v for k, v in fields.items() if k in names}
    rest = {k: v for k, v in fields.items() if k not in names}
    return dataclasses.replace(options, **mine), rest  # type: ignore[type-var]
