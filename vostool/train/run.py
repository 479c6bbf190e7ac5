"""Starting or resuming a training run from :class:`~vostool.options.TrainOptions` (what
``vostool train`` does once its options are parsed): the network's size, the training and
held-out data, the run's :class:`~vostool.train.loop.TrainConfig`, the loop, the export.
Under ``torchrun`` every process runs this, with its share of each batch (:mod:`.distributed`)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..datasets import VideoSequence, generate_dataset, held_out_names, load_dataset
from ..errors import InputError
from ..io.atomic import write_bytes_atomic
from ..options import FLOW_NAMES, TrainConfig, TrainOptions
from .distributed import from_env, threads_for
from .loop import Trainer
from .recipes import get_recipe

Say = Callable[[str], None]


def network_arch(options: TrainOptions) -> dict[str, Any]:
    """Builder keyword arguments of the network to train (variant, then explicit sizes); checks they fit the method."""
    from ..models import create_method, method_info
    from ..models.backbones import backbone_name
    from .init import has_pretrained_default

    method = options.config.method
    info = method_info(method)
    arch = info.variant_kwargs(options.variant)
    if options.backbone is not None:
        arch.pop("depth", None)
        arch["backbone"] = backbone_name(options.backbone, options.depth)
    elif options.depth is not None:
        arch.pop("backbone", None)
        arch["depth"] = options.depth
    arch.update({k: v for k, v in dict(base_width=options.base_width, mdim=options.mdim).items() if v is not None})
    if "freeze_bn" in inspect.signature(info.builder).parameters:
        freeze_bn = options.freeze_bn
        if freeze_bn is None:  # pretrained encoders keep their BatchNorm statistics
            pretrained = options.backbone_weights or options.config.pretrained or "none"
            freeze_bn = pretrained != "none" and (pretrained != "auto" or has_pretrained_default(arch.get("backbone", "resnet50")))
        arch["freeze_bn"] = freeze_bn
    try:
        create_method(method, **arch)
    except TypeError as exc:
        raise InputError(
            f"network options {sorted(k for k in arch if k != 'freeze_bn')} do not all apply to method {method!r} ({exc}); drop the ones it does not have"
        ) from None
    return arch


def _resumed(options: TrainOptions) -> TrainOptions:
    """On ``--resume``, the data settings stored in the run folder win over the defaults."""
    cfg_path = options.out / "config.json"
    if not (options.resume and cfg_path.is_file()):
        return options
    stored_cfg = json.loads(cfg_path.read_text())
    stored = stored_cfg.get("data", {})
    return dataclasses.replace(
        options,
        config=dataclasses.replace(options.config, seed=int(stored_cfg.get("seed", options.config.seed))),
        data_root=options.data_root or (Path(stored["root"]) if stored.get("root") else None),
        synthetic=options.synthetic or int(stored.get("synthetic", 0)),
        extra_data=options.extra_data or tuple(Path(p) for p in stored.get("extra", [])),
        size=int(stored.get("size", options.size)),
        val_split=stored.get("val_split", options.val_split),
        max_sequences=options.max_sequences or stored.get("max_sequences"),
    )


def load_training_data(options: TrainOptions, say: Say) -> tuple[list[VideoSequence], list[VideoSequence], list[str]]:
    """``(training videos, validation videos, names kept out of training)`` read at height ``options.size``."""
    if options.data_root is None and not options.synthetic:
        raise InputError("no training data: give --data ROOT (DAVIS or YouTube-VOS) and/or --synthetic N")
    root = options.data_root
    val_names = held_out_names(root, options.val_split) if root is not None else []
    # The shipped held-out split is never trained on, whichever split validates (unless --val-split none).
    held_out = held_out_names(root, "auto") if root is not None and options.val_split != "none" else []
    exclude = sorted(set(val_names) | set(held_out))
    sequences: list[VideoSequence] = []
    if root is not None:
        say(f"vostool: reading {root} (height {options.size}) ...")
        sequences = load_dataset(root, exclude=exclude, height=options.size, max_sequences=options.max_sequences)
    for extra in options.extra_data:
        say(f"vostool: reading {extra} (height {options.size}) ...")
        sequences += load_dataset(extra, exclude=exclude, height=options.size)
    if options.synthetic:
        width = sequences[0].images.shape[2] if sequences else round(options.size * 16 / 9)
        sequences += generate_dataset(options.config.seed, options.synthetic, size=(options.size, int(width)))
    val_sequences = load_dataset(root, include=val_names, height=options.size) if root is not None and val_names else []
    say(f"vostool: {len(sequences)} training videos ({sum(len(s) for s in sequences)} frames), {len(val_sequences)} validation videos")
    return sequences, val_sequences, exclude


def run_training(options: TrainOptions, *, quiet: bool = False, say: Say | None = None) -> Trainer:
    """Train (or resume) as ``options`` say; returns the trainer after its last step.

    Args:
        options: the parsed options of ``vostool train``.
        quiet: no progress bar and no log lines.
        say: where log lines go (default: nowhere).
    """
    import torch

    from ..inference.device import resolve_device

    get_recipe(options.config.method)  # one-line error for methods without a recipe
    if options.flow != "auto" and options.flow not in FLOW_NAMES:
        raise InputError(f"unknown flow {options.flow!r}; choose auto or one of: {', '.join(FLOW_NAMES)}")
    place, dist_device = from_env(options.device)
    quiet = quiet or not place.is_main  # one process reports
    say = say if say is not None and not quiet else (lambda m: None)
    threads = options.threads or threads_for(place)
    if threads:
        import cv2

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
    dev = dist_device or resolve_device(options.device)
    arch = network_arch(options)
    options = _resumed(options)
    sequences, val_sequences, excluded = load_training_data(options, say)
    cfg = dataclasses.replace(
        options.config,
        arch=arch,
        pretrained=options.backbone_weights or options.config.pretrained,
        steps=options.steps if options.steps is not None else (0 if options.resume else TrainConfig.steps),
        flow=options.flow if options.flow != "auto" else ("raft-small" if dev.type == "cuda" else "dis"),
        data={
            "root": str(options.data_root) if options.data_root else None,
            "extra": [str(p) for p in options.extra_data],
            "excluded": excluded,
            "size": options.size,
            "synthetic": options.synthetic,
            "val_split": options.val_split,
            "val_sequences": [s.name for s in val_sequences],
            "train_sequences": len(sequences),
            "max_sequences": options.max_sequences,
        },
    )
    trainer = Trainer(
        cfg, sequences, val_sequences, out=options.out, device=dev, resume=options.resume, progress=not quiet, distributed=place
    )
    log = trainer.run(
        stop_at=options.stop_at,
        time_limit_s=options.time_limit * 60 if options.time_limit else None,
        on_log=None if trainer.shows_progress else say,
    )
    place.close()
    if not place.is_main:
        return trainer
    final = options.out / "final.safetensors"
    if options.export_path is not None:
        if not final.is_file():  # stopped early (time limit, --stop-at): finish with what there is
            trainer.finish(say)
        options.export_path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(options.export_path, final.read_bytes())
    if log["validation"]:
        v = log["validation"][-1]
        say(f"vostool: step {v['step']}: validation J&F {v['J&F']:.3f} (J {v['J-Mean']:.3f}, F {v['F-Mean']:.3f})")
    say(f"vostool: step {trainer.step}/{trainer.config.steps} -> {options.out}")
    return trainer
