"""``vostool train``: parses the options of a training run; :mod:`vostool.train.run` runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..models.registry import BACKBONES, VARIANTS
from ..options import FLOW_NAMES, TrainConfig, TrainOptions, default
from .options import device_option, train_config_options


def _o(name: str) -> Any:
    return default(TrainOptions, name)


def _d(name: str) -> Any:
    return default(TrainConfig, name)


@click.command("train")
@train_config_options()
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=None, help="Training set root (DAVIS or YouTube-VOS layout).")
@click.option(
    "--extra-data",
    type=click.Path(path_type=Path),
    multiple=True,
    help="More training videos (DAVIS / YouTube-VOS root, or one clip folder with JPEGImages/ and Annotations/); repeatable.",
)
@click.option(
    "--out", "out", type=click.Path(path_type=Path), required=True, help="Run folder (checkpoints, train.json, final.safetensors)."
)
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=None,
    help=f"Optimiser steps, the poly schedule ends there (default {_d('steps')}; with --resume: the run's own).",
)
@click.option(
    "--size", type=click.IntRange(32, 4096), default=_o("size"), show_default=True, help="Frame height the videos are resized to when read."
)
@click.option(
    "--variant",
    type=click.Choice(list(VARIANTS)),
    default=None,
    help="Start from the method's paper size, its compact size (the shipped one: savos, embedding, ovsnet) or its tiny test size.",
)
@click.option(
    "--backbone",
    type=click.Choice(list(BACKBONES)),
    default=None,
    help="Encoder (default: the method's paper size, resnet50; efficientnet-lite*/mobilenet-v2 start from ImageNet weights).",
)
@click.option(
    "--depth", type=click.IntRange(18, 152), default=None, hidden=True, help="Encoder ResNet depth (older spelling of --backbone resnetN)."
)
@click.option("--base-width", type=click.IntRange(4, 256), default=None, help="ResNet encoder stem width.")
@click.option("--mdim", type=click.IntRange(4, 1024), default=None, help="Decoder width.")
@click.option(
    "--freeze-bn/--train-bn",
    default=None,
    help="Freeze the encoder's BatchNorm or train it (default: frozen when the encoder starts from pretrained weights, trained from scratch).",
)
@click.option(
    "--backbone-weights",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Your own ImageNet weights file for the encoder (e.g. torchvision's resnet50 .pth); same as --pretrained FILE.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its last checkpoint stopped.")
@device_option
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads for torch (default: torch's choice).")
@click.option(
    "--val-split",
    default=_o("val_split"),
    show_default=True,
    help="Held-out sequences: a split file, 'davis16' (the shipped 5-sequence split), 'none', or 'auto' (davis16 when all its sequences are in --data).",
)
@click.option(
    "--synthetic",
    type=click.IntRange(0),
    default=_o("synthetic"),
    show_default=True,
    help="Add this many synthetic videos to the training set.",
)
@click.option(
    "--flow",
    default=_o("flow"),
    show_default=True,
    help=f"Frozen flow for warping previous masks: auto (raft-small on CUDA, dis on the CPU), {', '.join(FLOW_NAMES)}.",
)
@click.option("--time-limit", type=float, default=None, metavar="MIN", help="Stop (with a checkpoint) after this many minutes.")
@click.option("--export", "export_path", type=click.Path(path_type=Path), default=None, help="Also copy the final fp16 weights here.")
@click.option("--stop-at", type=click.IntRange(1), default=None, hidden=True, help="Stop at this step (tests of --resume).")
@click.option("--max-sequences", type=click.IntRange(1), default=None, hidden=True)
@click.option("--quiet", is_flag=True, help="No progress bar or log lines.")
def train(config: TrainConfig, quiet: bool, **options: Any) -> None:
    """Train a method's network (Adam + poly schedule for every method).

    \b
    agss: 8-frame clips, flip + reversal, recurrent training on warped own masks (frozen flow:
          RAFT-small on CUDA, DIS on the CPU) with the tolerance rule, instance IoU loss (+ a small CE term).
    savos: lucid-dream + real 3-frame clips, recurrent, CE on softmax aggregation.
    embedding: 4-frame clips (3 support + 1 query), BCE (global) + CE (instances).
    ovsnet: frame pairs, Mask R-CNN + triplet Re-ID + 1.3 x MGA CE losses.

    \b
    Examples:
      vostool train --method agss --data DAVIS/ --out runs/a --steps 1000 --backbone efficientnet-lite2 --mdim 64 --frame-steps
      vostool train --method agss --data DAVIS/ --out runs/r --backbone resnet18 --base-width 32 --mdim 64 --pretrained none
      vostool train --method agss --out runs/a --resume
      vostool train --method agss --synthetic 20 --variant tiny --out runs/t --steps 50
    """
    from ..train.run import run_training

    run_training(TrainOptions(config=config, **options), quiet=quiet, say=lambda m: click.echo(m, err=True))
