"""``vostool train``: train a method's network on DAVIS / YouTube-VOS (or synthetic) videos.

Recipes exist for agss, savos, embedding and ovsnet (vostool.train.recipes); agss is the one trained for real so far.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import InputError
from ..io.atomic import write_bytes_atomic


def _parse_crop(text: str | None) -> list[int] | None:
    if not text or text.lower() == "none":
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--crop must look like 224x320 (height x width), got {text!r}") from None
    if h < 32 or w < 32:
        raise InputError(f"--crop {text} is too small; use at least 32x32")
    return [h, w]


@click.command("train")
@click.option("--method", type=click.Choice(["agss", "savos", "embedding", "ovsnet"]), default="agss", show_default=True, help="Method to train (agss is the one with a tested real run).")
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=None, help="Training set root (DAVIS or YouTube-VOS layout).")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Run folder (checkpoints, train.json, final.safetensors).")
@click.option("--steps", type=click.IntRange(1), default=None, help="Optimiser steps, the poly schedule ends there (default 1000; with --resume: the run's own).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Clips per step.")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Initial Adam learning rate (poly decay).")
@click.option("--size", type=click.IntRange(32, 4096), default=240, show_default=True, help="Frame height the videos are resized to when read.")
@click.option("--crop", default=None, metavar="HxW", help="Random crop of every clip (e.g. 224x320); needed with --batch > 1 when videos differ in size.")
@click.option("--variant", type=click.Choice(["paper", "tiny"]), default=None, help="Start from the method's paper or tiny size.")
@click.option("--depth", type=click.IntRange(18, 152), default=None, help="Encoder ResNet depth.")
@click.option("--base-width", type=click.IntRange(4, 256), default=None, help="Encoder stem width.")
@click.option("--mdim", type=click.IntRange(4, 1024), default=None, help="Decoder width.")
@click.option("--freeze-bn/--train-bn", default=False, show_default=True, help="Freeze BatchNorm (for pretrained encoders) or train it (from scratch).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its last checkpoint stopped.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="CPU threads for torch (default: torch's choice).")
@click.option("--val-split", default="auto", show_default=True, help="Held-out sequences: a split file, 'davis16' (the shipped 5-sequence split), 'none', or 'auto' (davis16 when all its sequences are in --data).")
@click.option("--val-every", type=click.IntRange(0), default=0, show_default=True, help="Steps between validations (0: only at the end).")
@click.option("--checkpoint-every", type=click.IntRange(0), default=100, show_default=True, help="Steps between checkpoints (0: only at the end).")
@click.option("--synthetic", type=click.IntRange(0), default=0, show_default=True, help="Add this many synthetic videos to the training set.")
@click.option("--tolerance", type=float, default=0.5, show_default=True, help="IoU below which a previous mask is replaced by the ground truth.")
@click.option("--ce-weight", type=float, default=0.1, show_default=True, help="Weight of the auxiliary cross-entropy term (0: IoU loss only).")
@click.option("--grad-clip", type=float, default=0.0, show_default=True, help="Gradient-norm clip (0: none).")
@click.option("--flow", type=click.Choice(["auto", "dis", "raft-small", "raft-large"]), default="auto", show_default=True, help="Frozen flow for warping previous masks (auto: raft-small on CUDA, dis on the CPU).")
@click.option("--flow-weights", default=None, help="Weights file or entry for a RAFT --flow (default: the manifest's).")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False), default=None, help="Start from these weights (safetensors of the same network) instead of random ones.")
@click.option("--bn-recalibrate", type=click.IntRange(0), default=100, show_default=True, help="At the end, re-estimate BatchNorm statistics over this many training clips (trained BN only; 0: never).")
@click.option("--time-limit", type=float, default=None, metavar="MIN", help="Stop (with a checkpoint) after this many minutes.")
@click.option("--export", "export_path", type=click.Path(path_type=Path), default=None, help="Also copy the final fp16 weights here.")
@click.option("--stop-at", type=click.IntRange(1), default=None, hidden=True, help="Stop at this step (tests of --resume).")
@click.option("--max-sequences", type=click.IntRange(1), default=None, hidden=True)
@click.option("--quiet", is_flag=True, help="No progress bar or log lines.")
def train(method: str, data_root: Path | None, out: Path, steps: int | None, batch: int, lr: float, size: int, crop: str | None, variant: str | None,
          depth: int | None, base_width: int | None, mdim: int | None, freeze_bn: bool, seed: int, resume: bool, device: str, threads: int | None,
          val_split: str, val_every: int, checkpoint_every: int, synthetic: int, tolerance: float, ce_weight: float, grad_clip: float, bn_recalibrate: int,
          flow: str, flow_weights: str | None, init: str | None, time_limit: float | None, export_path: Path | None, stop_at: int | None, max_sequences: int | None, quiet: bool) -> None:
    """Train a method's network (Adam + poly schedule for every method).

    \b
    agss: 8-frame clips, flip + reversal, recurrent training on warped own masks (frozen flow:
          RAFT-small on CUDA, DIS on the CPU) with the tolerance rule, instance IoU loss (+ a small CE term).
    savos: lucid-dream + real 3-frame clips, recurrent, CE on softmax aggregation.
    embedding: 4-frame clips (3 support + 1 query), BCE (global) + CE (instances).
    ovsnet: frame pairs, Mask R-CNN + triplet Re-ID + 1.3 x MGA CE losses.

    \b
    Examples:
      vostool train --method agss --data DAVIS/ --out runs/a --steps 2000 --depth 18 --base-width 32 --mdim 64
      vostool train --method agss --out runs/a --resume
      vostool train --method agss --synthetic 20 --variant tiny --out runs/t --steps 50
    """
    import torch

    from ..api import resolve_device
    from ..models import method_info
    from ..train.data import davis16_val_split, load_dataset, read_split_file
    from ..train.loop import TrainConfig, Trainer
    from ..train.recipes import get_recipe
    from ..train.synthetic import generate_dataset

    info = method_info(method)
    get_recipe(method)  # one-line error for methods without a recipe
    if threads:
        import cv2

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
    dev = resolve_device(device)
    arch = dict(info.tiny) if variant == "tiny" else {}
    arch.update({k: v for k, v in dict(depth=depth, base_width=base_width, mdim=mdim).items() if v is not None})
    import inspect

    if "freeze_bn" in inspect.signature(info.builder).parameters:
        arch["freeze_bn"] = freeze_bn

    from ..models import create_method

    try:
        create_method(method, **arch)
    except TypeError as exc:
        raise InputError(f"network options {sorted(k for k in arch if k != 'freeze_bn')} do not all apply to method {method!r} ({exc}); drop the ones it does not have") from None

    stored: dict = {}
    if resume and (out / "config.json").is_file():
        stored_cfg = json.loads((out / "config.json").read_text())
        stored = stored_cfg.get("data", {})
        seed = int(stored_cfg.get("seed", seed))
        data_root = data_root or (Path(stored["root"]) if stored.get("root") else None)
        synthetic = synthetic or int(stored.get("synthetic", 0))
        size = int(stored.get("size", size))
        val_split = stored.get("val_split", val_split)
        max_sequences = max_sequences or stored.get("max_sequences")
    if data_root is None and not synthetic:
        raise InputError("no training data: give --data ROOT (DAVIS or YouTube-VOS) and/or --synthetic N")

    val_names: list[str] = []
    if data_root is not None and val_split != "none":
        if val_split in ("auto", "davis16"):
            names = davis16_val_split()
            ann = [p for p in data_root.glob("Annotations/*") if p.is_dir()]
            have = {q.name for a in ann for q in a.iterdir()} | {q.name for q in (data_root / "Annotations").glob("*") if q.is_dir()}
            if all(n in have for n in names):
                val_names = names
            elif val_split == "davis16":
                raise InputError(f"the davis16 validation sequences are not all in {data_root}; give --val-split none or a split file")
        else:
            val_names = read_split_file(val_split)

    say = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    sequences = []
    if data_root is not None:
        say(f"vostool: reading {data_root} (height {size}) ...")
        sequences = load_dataset(data_root, exclude=val_names, height=size, max_sequences=max_sequences)
    h = size
    if synthetic:
        width = sequences[0].images.shape[2] if sequences else round(h * 16 / 9)
        sequences += generate_dataset(seed, synthetic, size=(h, int(width)))
    val_sequences = load_dataset(data_root, include=val_names, height=size) if val_names else []
    say(f"vostool: {len(sequences)} training videos ({sum(len(s) for s in sequences)} frames), {len(val_sequences)} validation videos")

    cfg = TrainConfig(
        method=method, arch=arch, steps=steps if steps is not None else (0 if resume else 1000), batch=batch, lr=lr, seed=seed, crop=_parse_crop(crop), tolerance=tolerance, ce_weight=ce_weight,
        checkpoint_every=checkpoint_every, val_every=val_every, grad_clip=grad_clip, bn_recalibrate=bn_recalibrate,
        flow=flow if flow != "auto" else ("raft-small" if dev.type == "cuda" else "dis"), flow_weights=flow_weights, init=init,
        data={"root": str(data_root) if data_root else None, "size": size, "synthetic": synthetic, "val_split": val_split,
              "val_sequences": val_names, "train_sequences": len(sequences), "max_sequences": max_sequences},
    )
    trainer = Trainer(cfg, sequences, val_sequences, out=out, device=dev, resume=resume, progress=not quiet)
    log = trainer.run(stop_at=stop_at, time_limit_s=time_limit * 60 if time_limit else None, on_log=None if quiet or trainer._progress(1) is not None else say)
    final = out / "final.safetensors"
    if export_path is not None:
        if not final.is_file():  # stopped early (time limit, --stop-at): finish with what there is
            trainer.finish(None if quiet else say)
        export_path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(export_path, final.read_bytes())
    if log["validation"]:
        v = log["validation"][-1]
        say(f"vostool: step {v['step']}: validation J&F {v['J&F']:.3f} (J {v['J-Mean']:.3f}, F {v['F-Mean']:.3f})")
    say(f"vostool: step {trainer.step}/{trainer.config.steps} -> {out}")
