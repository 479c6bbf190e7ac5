"""The training loop: deterministic steps, checkpoints, exact resume, validation, export.

A run folder holds:

* ``config.json`` — the run's settings (method, arch kwargs, recipe, optimiser, seed, data);
* ``checkpoint.safetensors`` — fp32 weights (metadata: ``arch`` JSON, ``method``, ``step``);
* ``checkpoint.pt`` — optimiser, schedule, step, RNG and AMP-scaler state (plain tensors and
  numbers: loaded with ``torch.load(..., weights_only=True)``);
* ``train.json`` — the log (one entry per logged step, validation results);
* ``final.safetensors`` — compact fp16 export (:func:`export_weights`).

Determinism: the network is initialised from ``torch.manual_seed(seed)``; the data of step ``s``
is a pure function of ``(seed, s)`` (:meth:`~vostool.train.sampling.ClipSampler.sample`); the
learning rate is a pure function of the step (poly: ``lr * (1 - s / steps) ** power``). So a run
resumed from a checkpoint continues bit-identically to an uninterrupted one (on the same device
and thread count). Under ``torchrun`` each process trains on its share of every step's batch
(:mod:`vostool.train.distributed`) and only rank 0 writes the run folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..datasets import VideoSequence
from ..errors import InputError
from ..io.atomic import atomic_path, write_text_atomic
from ..models import create_method
from ..options import TrainConfig
from ..weights import load_into, save_state_dict
from ..weights.serialization import load_state_dict
from .distributed import Distributed
from .recipes import Recipe, get_recipe
from .sampling import ClipSampler


def _param_groups(net: torch.nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """Adam parameter groups, each with an ``lr_scale`` applied on top of the poly schedule: the
    encoders' own (pretrained) parameters at ``encoder_lr``, their mask convolutions at
    ``mask_lr``, the rest (decoders, modules attached to an encoder) at ``lr``."""
    from .init import encoders_of

    params = [p for p in net.parameters() if p.requires_grad]
    encoders = encoders_of(net)
    special = [
        ({id(p) for enc in encoders for p in enc.backbone_parameters()}, config.encoder_lr),
        ({id(p) for enc in encoders for p in enc.mask_parameters()}, config.mask_lr),
    ]
    groups: list[dict[str, Any]] = []
    rest = list(params)
    for ids, lr in special:
        if lr is not None and lr != config.lr:
            groups.append({"params": [p for p in params if id(p) in ids], "lr_scale": lr / config.lr})
            rest = [p for p in rest if id(p) not in ids]
    return [{"params": rest, "lr_scale": 1.0}, *groups]


def poly_lr(base: float, step: int, total: int, power: float) -> float:
    """Poly learning rate of step ``step`` (0-based) out of ``total``."""
    return base * max(0.0, 1.0 - step / max(total, 1)) ** power


def _autocast_factory(device: torch.device) -> Callable[[], contextlib.AbstractContextManager[Any]] | None:
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.float16)
    return None


def export_weights(
    net: torch.nn.Module,
    path: str | Path,
    *,
    method: str,
    arch: dict[str, Any],
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float16,
) -> None:
    """Write the network's weights as a compact safetensors file (floats cast to ``dtype``).

    Metadata: ``arch`` (JSON builder kwargs, read back by :func:`vostool.api.load_method`),
    ``method``, ``format`` and every ``extra`` item (JSON-encoded when not a string).
    """
    sd = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous() for k, v in net.state_dict().items()}
    meta = {"arch": json.dumps(arch, sort_keys=True), "method": method, "format": "vostool"}
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    save_state_dict(path, sd, meta)


class Trainer:
    """Runs (or resumes) a training run in ``out``.

    Args:
        config: the run's settings (ignored on resume: the stored ``config.json`` is used, except
            a non-zero ``steps``, which moves the end of the schedule).
        train_sequences: training videos (in memory).
        val_sequences: held-out videos for validation (may be empty).
        out: run folder.
        device: torch device.
        resume: continue from ``out/checkpoint.*``.
        progress: show a rich progress bar on stderr.
        distributed: this process's place in a ``torchrun`` run (None: the only process).
    """

    def __init__(
        self,
        config: TrainConfig,
        train_sequences: Sequence[VideoSequence],
        val_sequences: Sequence[VideoSequence] = (),
        *,
        out: str | Path,
        device: str | torch.device = "cpu",
        resume: bool = False,
        progress: bool = True,
        distributed: Distributed | None = None,
    ) -> None:
        self.dist = distributed or Distributed()
        self.out = Path(out)
        self.device = torch.device(device)
        self.progress = progress
        self.val_sequences = list(val_sequences)
        if resume:
            cfg_path = self.out / "config.json"
            if not cfg_path.is_file() or not (self.out / "checkpoint.pt").is_file():
                raise InputError(f"nothing to resume in {self.out}: config.json or checkpoint.pt missing; start a run without --resume")
            stored = json.loads(cfg_path.read_text())
            if config.steps:  # an explicit step count changes the schedule's end (train further)
                stored["steps"] = int(config.steps)
            config = TrainConfig(**stored)
        elif (self.out / "checkpoint.pt").exists():
            raise InputError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
        self.config = config
        self.dist.shard(config.batch)  # a batch that does not split over the processes: one line, before any work
        self.recipe: Recipe = get_recipe(
            config.method,
            clip_length=config.clip_length,
            crop=tuple(config.crop) if config.crop else None,
            tolerance=config.tolerance,
            ce_weight=config.ce_weight,
            max_objects=config.max_objects,
            flow=config.flow,
            flow_weights=config.flow_weights,
            augment=config.augment,
        )
        self.sampler = self.recipe.sampler(list(train_sequences), config.seed)
        torch.manual_seed(config.seed)
        self.method = create_method(config.method, **config.arch)
        self.net = self.method.net
        assert self.net is not None
        self.net.to(self.device)
        self.optimizer = torch.optim.Adam(_param_groups(self.net, config), lr=config.lr, weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        self.autocast = _autocast_factory(self.device)
        self.step = 0
        self.log: dict[str, Any] = {
            "config": config.to_json(),
            "recipe": self.recipe.describe(),
            "steps": [],
            "validation": [],
            "wall_s": 0.0,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            self._load_checkpoint()
        else:
            self.log["start_weights"] = self._start_weights()
            if self.dist.is_main:
                write_text_atomic(self.out / "config.json", json.dumps(config.to_json(), indent=2))
        self.model = self.dist.wrap(self.net)  # what the recipe trains: the network, in DDP under torchrun
        if self.dist.enabled:
            self.log["distributed"] = {"processes": self.dist.world, "clips_per_process": len(self.dist.shard(config.batch))}

    def _start_weights(self) -> dict[str, Any]:
        """Load the pretrained encoder and / or ``init`` weights; what was loaded (for the log)."""
        from .init import load_init, load_pretrained_encoders

        cfg = self.config
        out: dict[str, Any] = {}
        if (pre := load_pretrained_encoders(self.net, cfg.pretrained, mask_init=cfg.mask_init)) is not None:
            out["pretrained"] = pre
        if cfg.init:
            out["init"] = load_init(self.net, cfg.method, cfg.init)
        return out

    # --- checkpoints ------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write ``checkpoint.safetensors`` (fp32 weights) then ``checkpoint.pt`` (the rest); rank 0 only."""
        if not self.dist.is_main:
            return
        sd = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_state_dict(
            self.out / "checkpoint.safetensors",
            sd,
            {"arch": json.dumps(self.config.arch, sort_keys=True), "method": self.config.method, "step": str(self.step)},
        )
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "schedule": {"base_lr": self.config.lr, "total": self.config.steps, "power": self.config.poly_power},
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "wall_s": float(self.log["wall_s"]),
        }
        with atomic_path(self.out / "checkpoint.pt") as tmp:
            torch.save(state, tmp)
        self._write_log()

    def _load_checkpoint(self) -> None:
        state = torch.load(self.out / "checkpoint.pt", map_location="cpu", weights_only=True)
        sd = load_state_dict(self.out / "checkpoint.safetensors")
        load_into(self.net, sd, what=f"checkpoint in {self.out}")
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step = int(state["step"])
        log_path = self.out / "train.json"
        if log_path.is_file():
            old = json.loads(log_path.read_text())
            self.log["steps"] = [e for e in old.get("steps", []) if e["step"] <= self.step]
            self.log["validation"] = [e for e in old.get("validation", []) if e["step"] <= self.step]
            self.log["start_weights"] = old.get("start_weights", {})
        self.log["wall_s"] = float(state.get("wall_s", 0.0))
        self.log["resumed_at"] = self.log.get("resumed_at", []) + [self.step]

    def _write_log(self) -> None:
        if not self.dist.is_main:
            return
        write_text_atomic(self.out / "train.json", json.dumps(self.log, indent=1))

    # --- one step ---------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimiser step on the batch of ``self.step``; returns its stats."""
        cfg = self.config
        lr = poly_lr(cfg.lr, self.step, cfg.steps, cfg.poly_power)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        batch = self.recipe.make_batch(self.sampler, self.step, self.dist.shard(cfg.batch)).to(self.device)
        self.net.train()
        if cfg.frame_steps:
            loss, stats = self.recipe.loss(self.model, batch, autocast=self.autocast, frame_step=self._optimiser_step)
        else:
            loss, stats = self.recipe.loss(self.model, batch, autocast=self.autocast)
            self._optimiser_step(loss)
        self.step += 1
        return {**self.dist.mean({"loss": float(loss.detach()), **stats}), "lr": lr}

    def _optimiser_step(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` and take one optimiser step (gradient clip, AMP scaling)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def validate(self) -> dict[str, Any]:
        """J&F on the validation sequences (the run's flow, at the sequences' resolution)."""
        from .validate import validation_scores

        res = validation_scores(
            self.method, self.val_sequences, flow=self.config.flow, flow_weights=self.config.flow_weights, device=self.device
        )
        self.net.train()
        return res

    # --- the run ----------------------------------------------------------------------------
    def run(
        self, *, stop_at: int | None = None, time_limit_s: float | None = None, on_log: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Train up to ``config.steps`` (or ``stop_at``, or until ``time_limit_s`` of this call).

        Checkpoints every ``checkpoint_every`` steps and when stopping; validates every
        ``val_every`` steps; at the last step runs :meth:`finish` (BN recalibration, final
        validation, export).

        Returns:
            The log (also in ``train.json``).
        """
        cfg = self.config
        end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        start_wall = time.perf_counter()
        base_wall = float(self.log["wall_s"])
        ema: float | None = None
        bar = self._progress(end)
        last_t = time.perf_counter()
        with bar if bar is not None else contextlib.nullcontext():
            task = bar.add_task("train", total=end, completed=self.step, loss=float("nan"), speed=0.0) if bar is not None else None
            while self.step < end:
                stats = self.train_step()
                now = time.perf_counter()
                dt, last_t = now - last_t, now
                ema = stats["loss"] if ema is None else 0.95 * ema + 0.05 * stats["loss"]
                self.log["wall_s"] = base_wall + (now - start_wall)
                if bar is not None and task is not None:
                    bar.update(task, completed=self.step, loss=ema, speed=1.0 / max(dt, 1e-9))
                if self.step % max(cfg.log_every, 1) == 0 or self.step == end:
                    entry = {
                        "step": self.step,
                        "loss_ema": ema,
                        "wall_s": round(self.log["wall_s"], 2),
                        "s_per_step": round(dt, 3),
                        **{k: round(v, 6) for k, v in stats.items()},
                    }
                    self.log["steps"].append(entry)
                    if on_log is not None:
                        on_log(json.dumps(entry))
                timed_out = time_limit_s is not None and self.dist.any(now - start_wall >= time_limit_s)
                if cfg.val_every and self.step % cfg.val_every == 0 and self.val_sequences and self.step < end and self.dist.is_main:
                    self._validate_and_log(on_log)
                if (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or self.step == end or timed_out:
                    self.save_checkpoint()
                if timed_out:
                    self.log["stopped"] = f"time limit {time_limit_s:.0f} s reached at step {self.step}"
                    break
        self.save_checkpoint()  # the raw trained state: what --resume continues from
        if self.step == cfg.steps and self.dist.is_main:
            self.finish(on_log)
        return self.log

    def finish(self, on_log: Callable[[str], None] | None = None) -> None:
        """End of training: BatchNorm recalibration (when BN was trained), final validation,
        ``final.safetensors``. The checkpoint keeps the un-recalibrated state."""
        cfg = self.config
        if cfg.bn_recalibrate and not getattr(self.net, "freeze_bn", False):
            recipe = dataclasses.replace(self.recipe, crop=None) if self.recipe.crop is not None else self.recipe  # type: ignore[type-var]
            start = time.perf_counter()
            n = recalibrate_batchnorm(self.net, recipe, self.sampler, cfg.bn_recalibrate, device=self.device, start_step=cfg.steps)
            self.log["bn_recalibration"] = {"clips": cfg.bn_recalibrate, "layers": n, "seconds": round(time.perf_counter() - start, 1)}
        if self.val_sequences:
            self._validate_and_log(on_log)
        self._write_log()
        self.export(self.out / "final.safetensors")

    def _validate_and_log(self, on_log: Callable[[str], None] | None) -> None:
        res = self.validate()
        entry = {"step": self.step, **res}
        self.log["validation"].append(entry)
        self._write_log()
        if on_log is not None:
            on_log(json.dumps({"step": self.step, "J&F": res["J&F"], "J-Mean": res["J-Mean"], "F-Mean": res["F-Mean"]}))

    def export(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Compact fp16 export with arch / method / training metadata, plus the inference
        settings the weights were trained for: ``inference_size`` (the frame height the training
        videos were read at, i.e. the internal size's shorter side for landscape video) and
        ``flow`` (the flow backend that warped the previous masks)."""
        info = {
            "steps": self.step,
            "seed": self.config.seed,
            "lr": self.config.lr,
            "batch": self.config.batch,
            "recipe": self.recipe.describe(),
            "data": self.config.data,
            "wall_s": round(float(self.log["wall_s"]), 1),
        }
        if self.log.get("start_weights"):
            info["start_weights"] = self.log["start_weights"]
        if self.log["validation"]:
            v = self.log["validation"][-1]
            info["validation"] = {k: v[k] for k in ("J-Mean", "F-Mean", "J&F", "sequences") if k in v}
        inference = {"flow": self.config.flow} if self.method.uses_flow else {}  # the flow validation warped with
        if self.config.data.get("size"):
            inference["inference_size"] = str(self.config.data["size"])
        export_weights(
            self.net, path, method=self.config.method, arch=self.config.arch, extra={"training": info, **inference, **(extra or {})}
        )
        return Path(path)

    @property
    def shows_progress(self) -> bool:
        """Whether :meth:`run` shows a progress bar (progress asked for and stderr is a terminal)."""
        return self._progress(1) is not None

    def _progress(self, total: int) -> Any:
        if not self.progress:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = Console(stderr=True)
        if not console.is_terminal:
            return None
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[speed]:.2f} step/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )


def recalibrate_batchnorm(
    net: torch.nn.Module, recipe: Recipe, sampler: ClipSampler, clips: int, *, device: str | torch.device = "cpu", start_step: int = 0
) -> int:
    """Re-estimate every BatchNorm's running mean / variance as the plain average over ``clips``
    training clips ("precise BN"), forward only, in the training recipe's own recurrent passes.

    Needed when BatchNorm was trained with tiny batches (one clip = one image per forward): the
    momentum-0.1 running statistics then follow the last few hundred images only and can differ a
    lot from the population statistics the network sees at test time.

    Args:
        net: the network (its BatchNorm layers are updated in place; the affine weights are not).
        recipe / sampler: draw the clips (steps ``start_step .. start_step + clips - 1``, batch 1).
        clips: how many clips.

    Returns:
        The number of BatchNorm layers recalibrated (0: nothing to do).
    """
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or clips <= 0:
        return 0
    saved = [(m.momentum, m.training) for m in bns]
    was_training = net.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = plain mean over the batches seen
    net.train()
    with torch.no_grad():
        for i in range(clips):
            batch = recipe.make_batch(sampler, start_step + i, 1).to(torch.device(device))
            recipe.loss(net, batch)
    for m, (mom, _) in zip(bns, saved):
        m.momentum = mom
    net.train(was_training)
    return len(bns)


__all__ = ["TrainConfig", "Trainer", "export_weights", "poly_lr", "recalibrate_batchnorm"]
