"""The options of vostool's commands: one dataclass per concern, built once and passed whole.

* :class:`RunOptions` — how a session segments: method, flow, weights, device, internal size,
  precision. Used by ``vostool segment``, ``vostool bench`` and :func:`vostool.create_session`.
* :class:`OutputOptions` — what ``vostool segment`` writes and what it does with a folder that
  already holds a run.
* :class:`WorkerOptions` — where the videos of ``vostool batch`` (and the sequences of
  ``vostool bench --method``) run: this process, local worker processes, or a Ray cluster.
* :class:`TrainConfig` — the settings of a training run (stored as its ``config.json``), and
  :class:`TrainOptions` — what ``vostool train`` was asked to do: a config and how to start it.

The CLI builds them with shared click option decorators (:mod:`vostool.cli.options`) whose
defaults are these fields' defaults; the Python API builds them from keyword arguments. This
module is plain data (no torch), so the CLI can use it before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

FLOW_NAMES = ("dis", "farneback", "raft-small", "raft-large")
"""Optical-flow backends (:func:`vostool.flow.create_flow`)."""

PRECISION_NAMES = ("fp32", "bf16", "fp16")

"""Network precisions (autocast dtypes in :data:`vostool.inference.torch_ops.PRECISIONS`)."""

RUNTIME_NAMES = ("auto", "torch", "onnxruntime", "cuda-graphs")
"""What runs a network's heavy blocks (:attr:`RunOptions.runtime`)."""


@dataclass(frozen=True)
class RunOptions:
    """How a session segments a video.

    Attributes:
        method: registered method name (``flow``, ``agss``, ...).
        flow: flow backend (:data:`FLOW_NAMES`), or None: the flow the weights were trained
            with, else the method's default.
        weights: method weights: None (the manifest's default), an entry name, a file, or
            ``"random"`` (speed measurements only).
        flow_weights: RAFT weights: a file or an entry name (None: the manifest's default).
        offline: never download weights (None: ``VOSTOOL_OFFLINE`` / ``HF_HUB_OFFLINE``).
        device: ``auto``, ``cpu``, ``cuda[:i]`` or ``mps``.
        size: internal resolution (shorter side); None: the size the method's weights were
            trained at (their ``inference`` defaults), else the input resolution; 0: the input
            resolution.
        precision: one of :data:`PRECISION_NAMES` (CUDA autocast around the network).
        resize_mask: scale masks of another size to the video instead of failing.
        channels_last: channels-last network weights on CUDA (ignored elsewhere).
        compile: ``torch.compile`` the network's blocks (:mod:`vostool.inference.blocks`).
        runtime: what runs a network's heavy blocks: ``auto`` (on the CPU ONNX Runtime when the
            ``ort`` extra is installed, on CUDA CUDA graphs, else torch), ``torch``,
            ``onnxruntime`` (CPU, fp32) or ``cuda-graphs`` (CUDA) (:mod:`vostool.inference.blocks`).
        scales: test scales whose foreground probabilities are averaged (SAVOS's multi-scale
            testing, e.g. ``(0.5, 0.75, 1.0)``); None: the method's single scale.
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
    runtime: str = "auto"
    scales: tuple[float, ...] | None = None
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
class WorkerOptions:
    """Where many videos run (:mod:`vostool.batch`).

    Attributes:
        workers: parallel workers: local processes, or Ray actors with ``ray``. None: the
            default (one per GPU, else one per core / CPU); 1 runs locally in the calling process.
        ray: None (this machine), or a Ray address: ``""`` (``ray.init()``'s default: the running
            cluster, else a new local instance), ``"local"``, ``"auto"``, ``HOST:PORT``, ``ray://...``.
        cpus_per_worker: PyTorch threads of a local worker and CPUs of a Ray actor (None: the
            cores divided among the workers).
        gpus_per_worker: GPUs of a Ray actor, fractional allowed (None: 1 on a cluster with GPUs, else 0).
    """

    workers: int | None = None
    ray: str | None = None
    cpus_per_worker: int | None = None
    gpus_per_worker: float | None = None


@dataclass
class TrainConfig:
    """Settings of a run (stored as ``config.json``).

    Attributes:
        method: registered method name with a recipe (:data:`~vostool.train.recipes.RECIPES`).
        arch: builder keyword arguments of the network.
        steps: total optimiser steps (the poly schedule reaches 0 at ``steps``).
        batch: clips per step.
        lr: initial learning rate (Adam).
        poly_power: exponent of the poly schedule.
        weight_decay: Adam weight decay.
        seed: initialisation and data seed.
        clip_length / crop / tolerance / ce_weight / max_objects: recipe settings (None / unused
            ones: the recipe's defaults; tolerance and ce_weight are AGSS-VOS's).
        checkpoint_every: steps between checkpoints (0 = only at the end).
        val_every: steps between validations (0 = only at the end; validation needs val sequences).
        log_every: steps between log entries.
        grad_clip: gradient-norm clip (0 = none).
        bn_recalibrate: at the end, re-estimate BatchNorm statistics over this many training
            clips (:func:`vostool.train.loop.recalibrate_batchnorm`; skipped for frozen BN; 0 = never).
        flow / flow_weights: the frozen flow of recipes that warp (AGSS: ``dis`` on the CPU,
            ``raft-small`` on CUDA) and of validation.
        pretrained: ImageNet weights of the encoder(s): ``auto`` (the backbone's entry in
            weights.toml, if any), ``none``, an entry or a file (:mod:`vostool.train.init`).
        init: weights of the whole network to start from (a file or entry of the same network,
            or RGMP's), None = random (after ``pretrained``).
        encoder_lr: learning rate of the pretrained encoder parameters (None: ``lr``);
            method-own modules attached to the encoder take ``lr``.
        mask_lr: learning rate of the encoders' mask convolutions (None: ``lr``). They start at
            zero next to a pretrained stem whose weights are two orders of magnitude larger, and
            Adam moves a weight by about the learning rate per step.
        mask_init: the mask convolutions of pretrained encoders start at ``zero`` (the encoder
            computes its ImageNet features whatever the mask) or ``random`` (PyTorch's default
            initialisation, as new input filters are in RGMP and SAVOS). A method whose only
            object cue is that mask (SAVOS, the embedding's support encoder) can otherwise learn
            to ignore it and memorise the training objects instead.
        frame_steps: one optimiser step per predicted frame of a clip instead of one per clip
            (recipes with a recurrent clip loss: AGSS-VOS, as its authors train).
        augment: ``paper`` (the paper's augmentations) or ``strong`` (recipes that have it:
            AGSS-VOS adds lucid-dream clips, zoom / rotation and lighting changes).
    """

    method: str = "agss"
    arch: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch: int = 1
    lr: float = 1e-4
    poly_power: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    clip_length: int | None = None
    crop: list[int] | None = None
    tolerance: float = 0.5
    ce_weight: float = 0.1
    max_objects: int | None = None
    checkpoint_every: int = 100
    val_every: int = 0
    log_every: int = 10
    grad_clip: float = 0.0
    bn_recalibrate: int = 100
    flow: str = "dis"
    flow_weights: str | None = None
    init: str | None = None
    pretrained: str | None = "auto"
    encoder_lr: float | None = None
    mask_lr: float | None = None
    mask_init: str = "zero"
    frame_steps: bool = False
    augment: str = "paper"
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainOptions:
    """What ``vostool train`` was asked to do: the run's settings and what starting it needs.

    Attributes:
        out: the run folder.
        config: the run's settings (``arch`` and ``data`` are filled in when the run starts).
        steps: optimiser steps; None: the config's default, or the run's own with ``resume``.
        flow: ``auto`` (``raft-small`` on CUDA, ``dis`` on the CPU) or a flow name.
        data_root / extra_data / size / synthetic / val_split / max_sequences: the training set (a
            DAVIS or YouTube-VOS root, more roots or single clip folders, read at frame height
            ``size``), synthetic videos added to it, the held-out split
            (:func:`vostool.datasets.held_out_names`), a cap on the sequences read.
        variant / backbone / depth / base_width / mdim / freeze_bn: the network (``arch``);
            ``freeze_bn`` None: frozen when the encoder starts from pretrained weights.
        backbone_weights: a file of ImageNet weights for the encoder (``config.pretrained``).
        resume / device / threads / time_limit / export_path / stop_at: continue the run in
            ``out``; where it runs; CPU threads; minutes before stopping with a checkpoint; a copy
            of the final weights; stop at this step.
    """

    out: Path
    config: TrainConfig = field(default_factory=TrainConfig)
    steps: int | None = None
    flow: str = "auto"
    data_root: Path | None = None
    extra_data: tuple[Path, ...] = ()
    size: int = 240
    synthetic: int = 0
    val_split: str = "auto"
    max_sequences: int | None = None
    variant: str | None = None
    backbone: str | None = None
    depth: int | None = None
    base_width: int | None = None
    mdim: int | None = None
    freeze_bn: bool | None = None
    backbone_weights: str | None = None
    resume: bool = False
    device: str = "auto"
    threads: int | None = None
    time_limit: float | None = None
    export_path: Path | None = None
    stop_at: int | None = None


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
