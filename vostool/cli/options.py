"""Click options shared by the commands, each declared once.

:func:`run_options` adds the options of :class:`~vostool.options.RunOptions` and hands the
command one ``run`` argument; :func:`output_options` does the same for
:class:`~vostool.options.OutputOptions` (``output``), :func:`worker_options` for
:class:`~vostool.options.WorkerOptions` (``parallel``) and :func:`train_config_options` for
:class:`~vostool.options.TrainConfig` (``config``). Defaults are the dataclasses' own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import InputError
from ..options import FLOW_NAMES, PRECISION_NAMES, RUNTIME_NAMES, OutputOptions, RunOptions, TrainConfig, WorkerOptions, default

F = TypeVar("F", bound=Callable[..., Any])

METHOD_HELP = "Segmentation method: flow, agss, ovsnet, savos, embedding."
FLOW_HELP = f"Optical flow: {', '.join(FLOW_NAMES)} (default: the method's)."

device_option = click.option("--device", default=default(RunOptions, "device"), show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
flow_weights_option = click.option(
    "--flow-weights", default=None, help="RAFT weights: a file or a weights.toml entry (default: the manifest's)."
)
offline_option = click.option(
    "--offline", is_flag=True, default=None, help="Never open a connection to fetch weights (also VOSTOOL_OFFLINE=1 or HF_HUB_OFFLINE=1)."
)


def _grouped(cls: type[Any], name: str, options: list[Callable[[F], F]], fields: tuple[str, ...] | dict[str, str]) -> Callable[[F], F]:
    """Decorator adding ``options`` to a command and passing their values as one ``cls`` in ``name``
    (``fields``: the options' parameter names, or ``{parameter name: field name}``)."""
    names = fields if isinstance(fields, dict) else {f: f for f in fields}

    def deco(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[name] = cls(**{f: kwargs.pop(p) for p, f in names.items()})
            return command(*args, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper  # type: ignore[return-value]

    return deco


def _check_size(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and 0 < value < 16:
        raise click.BadParameter(f"{value} is too small: give at least 16 (or 0 for the input size)")
    return value


def _scales(ctx: click.Context, param: click.Parameter, text: str | None) -> tuple[float, ...] | None:
    """``--scales 0.5,0.75,1`` -> ``(0.5, 0.75, 1.0)``; none -> None."""
    if not text:
        return None
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--scales must be numbers separated by commas (e.g. 0.5,0.75,1), got {text!r}") from None
    if not all(0.1 <= s <= 4 for s in scales):
        raise InputError(f"--scales {text}: every scale must be between 0.1 and 4")
    return scales


def run_options(
    *,
    method: bool = True,
    size_help: str = "Internal resolution (shorter side); outputs stay at the input size. "
    "Default: the size the weights were trained at, else the input size; 0: the input size.",
) -> Callable[[F], F]:
    """The :class:`RunOptions` options (``--method`` only with ``method=True``), passed as ``run``."""
    d = RunOptions()
    options = [
        *([click.option("--method", default=d.method, show_default=True, help=METHOD_HELP)] if method else []),
        click.option("--flow", default=d.flow, help=FLOW_HELP),
        click.option(
            "--weights", default=d.weights, help="Method weights: a file, a weights.toml entry, or 'random' (speed measurements only)."
        ),
        flow_weights_option,
        offline_option,
        device_option,
        click.option(
            "--precision", type=click.Choice(PRECISION_NAMES), default=d.precision, show_default=True, help="Network precision (autocast)."
        ),
        click.option("--size", type=click.IntRange(0, 4096), default=d.size, callback=_check_size, help=size_help),
        click.option(
            "--resize-mask", is_flag=True, default=d.resize_mask, help="Scale masks whose size differs from the video (nearest neighbour)."
        ),
        click.option(
            "--compile",
            is_flag=True,
            default=d.compile,
            help="torch.compile the network's blocks (static shapes; the first frames take longer).",
        ),
        click.option(
            "--runtime",
            type=click.Choice(RUNTIME_NAMES),
            default=d.runtime,
            show_default=True,
            help="What runs the network's heavy blocks: auto = ONNX Runtime on the CPU when installed (pip install 'vostool[ort]'), CUDA graphs on CUDA.",
        ),
        click.option(
            "--scales",
            default=None,
            callback=_scales,
            metavar="S1,S2,...",
            help="savos: average the foreground over these test scales (the paper's 0.5,0.75,1; default: 1 only).",
        ),
    ]
    fields = ("method",) * method + (
        "flow",
        "weights",
        "flow_weights",
        "offline",
        "device",
        "precision",
        "size",
        "resize_mask",
        "compile",
        "runtime",
        "scales",
    )
    return _grouped(RunOptions, "run", options, fields)


def output_options(*, resume: bool = True) -> Callable[[F], F]:
    """The :class:`OutputOptions` options, passed as ``output`` (``--resume`` only with ``resume=True``)."""
    d = OutputOptions()
    options = [
        click.option("--overlay/--no-overlay", default=d.overlay, show_default=True, help="Write overlay.mp4."),
        click.option("--overlay-frames", is_flag=True, default=d.overlay_frames, help="Also write overlays/<frame>.png."),
        click.option("--soft", is_flag=True, default=d.soft, help="Write soft scores soft/<id>/<frame>.png (probability x 255)."),
        click.option("--mattes", is_flag=True, default=d.mattes, help="Write black/white mattes mattes/<id>/<frame>.png."),
        *(
            [
                click.option(
                    "--resume",
                    is_flag=True,
                    default=d.resume,
                    help="Finish an interrupted run in OUT (same masks as an uninterrupted run).",
                )
            ]
            if resume
            else []
        ),
        click.option("--overwrite", is_flag=True, default=d.overwrite, help="Replace the results already in OUT."),
        click.option(
            "--checkpoint-every",
            type=click.IntRange(1),
            default=d.checkpoint_every,
            show_default=True,
            help="Frames between resume checkpoints.",
        ),
    ]
    fields = ("overlay", "overlay_frames", "soft", "mattes", *(("resume",) if resume else ()), "overwrite", "checkpoint_every")
    return _grouped(OutputOptions, "output", options, fields)


def worker_options(*, workers_flag: str = "--workers", workers_help: str | None = None) -> Callable[[F], F]:
    """The :class:`WorkerOptions` options (the worker count under ``workers_flag``), passed as ``parallel``."""
    options = [
        click.option(
            workers_flag,
            "parallel_workers",
            type=click.IntRange(1, 1024),
            default=None,
            help=workers_help
            or "Parallel workers: local processes (default: one per GPU, else one per core; 1 runs in this process), or Ray actors with --ray (default: one per GPU, else one per CPU).",
        ),
        click.option(
            "--ray",
            is_flag=False,
            flag_value="",
            default=None,
            metavar="[ADDRESS]",
            help="Run on a Ray cluster: --ray alone (the running cluster, else a local one), --ray auto, --ray local, --ray HOST:PORT. Needs pip install 'vostool[ray]'.",
        ),
        click.option(
            "--cpus-per-worker",
            type=click.IntRange(1, 1024),
            default=None,
            help="CPU threads per worker (default: the cores divided among the workers).",
        ),
        click.option(
            "--gpus-per-worker",
            type=click.FloatRange(0, 64),
            default=None,
            help="GPUs per Ray worker, fractional allowed (default: 1 on a cluster with GPUs, else 0).",
        ),
    ]
    fields = {"parallel_workers": "workers", "ray": "ray", "cpus_per_worker": "cpus_per_worker", "gpus_per_worker": "gpus_per_worker"}
    return _grouped(WorkerOptions, "parallel", options, fields)


def _crop(ctx: click.Context, param: click.Parameter, text: str | None) -> list[int] | None:
    """``--crop 224x320`` -> ``[224, 320]`` (height, width); none -> None."""
    if not text or text.lower() == "none":
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--crop must look like 224x320 (height x width), got {text!r}") from None
    if h < 32 or w < 32:
        raise InputError(f"--crop {text} is too small; use at least 32x32")
    return [h, w]


def train_config_options() -> Callable[[F], F]:
    """The options of a training run's :class:`TrainConfig` (its stored settings), passed as ``config``."""
    d = TrainConfig()
    options = [
        click.option(
            "--method",
            default=d.method,
            show_default=True,
            help="Method to train: one with a training recipe (below); agss is the one with a tested real run.",
        ),
        click.option("--batch", type=click.IntRange(1), default=d.batch, show_default=True, help="Clips per step."),
        click.option("--lr", type=float, default=d.lr, show_default=True, help="Initial Adam learning rate (poly decay)."),
        click.option(
            "--crop",
            default=None,
            metavar="HxW",
            callback=_crop,
            help="Random crop of every clip (e.g. 224x320); needed with --batch > 1 when videos differ in size.",
        ),
        click.option("--seed", type=int, default=d.seed, show_default=True),
        click.option(
            "--val-every",
            type=click.IntRange(0),
            default=d.val_every,
            show_default=True,
            help="Steps between validations (0: only at the end).",
        ),
        click.option(
            "--checkpoint-every",
            type=click.IntRange(0),
            default=d.checkpoint_every,
            show_default=True,
            help="Steps between checkpoints (0: only at the end).",
        ),
        click.option(
            "--tolerance",
            type=float,
            default=d.tolerance,
            show_default=True,
            help="IoU below which a previous mask is replaced by the ground truth.",
        ),
        click.option(
            "--ce-weight",
            type=float,
            default=d.ce_weight,
            show_default=True,
            help="Weight of the auxiliary cross-entropy term (0: IoU loss only).",
        ),
        click.option("--grad-clip", type=float, default=d.grad_clip, show_default=True, help="Gradient-norm clip (0: none)."),
        flow_weights_option,
        click.option(
            "--init",
            default=d.init,
            metavar="ENTRY|FILE",
            help="Start the whole network from these weights: a file or entry of the same network, or RGMP's "
            "(rgmp.davis17 after `vostool weights import`, or its weights.pth).",
        ),
        click.option(
            "--pretrained",
            default=d.pretrained,
            show_default=True,
            metavar="auto|none|ENTRY|FILE",
            help="ImageNet weights of the encoder: auto (the backbone's weights entry, e.g. efficientnet-lite2.imagenet; "
            "none for ResNets), none (from scratch), an entry or a file.",
        ),
        click.option(
            "--encoder-lr", type=float, default=d.encoder_lr, help="Learning rate of the pretrained encoder layers (default: --lr)."
        ),
        click.option("--mask-lr", type=float, default=d.mask_lr, help="Learning rate of the encoder's mask convolution (default: --lr)."),
        click.option(
            "--mask-init",
            type=click.Choice(["zero", "random"]),
            default=d.mask_init,
            show_default=True,
            help="Mask convolution next to a pretrained stem: zero (ImageNet features at step 0) or random "
            "(new filters as RGMP / SAVOS; methods whose only object cue is that mask need it).",
        ),
        click.option(
            "--augment",
            type=click.Choice(["paper", "strong"]),
            default=d.augment,
            show_default=True,
            help="agss: the paper's flip + reversal, or also lucid-dream clips, zoom / rotation and lighting changes.",
        ),
        click.option(
            "--frame-steps",
            is_flag=True,
            default=d.frame_steps,
            help="One optimiser step per predicted frame instead of per clip (agss, as its authors train).",
        ),
        click.option(
            "--bn-recalibrate",
            type=click.IntRange(0),
            default=d.bn_recalibrate,
            show_default=True,
            help="At the end, re-estimate BatchNorm statistics over this many training clips (trained BN only; 0: never).",
        ),
    ]
    fields = (
        "method",
        "batch",
        "lr",
        "crop",
        "seed",
        "val_every",
        "checkpoint_every",
        "tolerance",
        "ce_weight",
        "grad_clip",
        "flow_weights",
        "init",
        "pretrained",
        "encoder_lr",
        "mask_lr",
        "mask_init",
        "augment",
        "frame_steps",
        "bn_recalibrate",
    )
    return _grouped(TrainConfig, "config", options, fields)
