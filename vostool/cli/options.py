"""Click options shared by the commands, each declared once.

:func:`run_options` adds the options of :class:`~vostool.options.RunOptions` and hands the
command one ``run`` argument; :func:`output_options` does the same for
:class:`~vostool.options.OutputOptions` (``output``). Defaults are the dataclasses' own.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import click

from ..options import FLOW_NAMES, PRECISION_NAMES, OutputOptions, RunOptions, default

F = TypeVar("F", bound=Callable[..., Any])

METHOD_HELP = "Segmentation method: flow, agss, ovsnet, savos, embedding."
FLOW_HELP = f"Optical flow: {', '.join(FLOW_NAMES)} (default: the method's)."

device_option = click.option("--device", default=default(RunOptions, "device"), show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
flow_weights_option = click.option("--flow-weights", default=None, help="RAFT weights: a file or a weights.toml entry (default: the manifest's).")
offline_option = click.option("--offline", is_flag=True, default=None, help="Never open a connection to fetch weights (also VOSTOOL_OFFLINE=1 or HF_HUB_OFFLINE=1).")


def _grouped(cls: type[Any], name: str, options: list[Callable[[F], F]], fields: tuple[str, ...]) -> Callable[[F], F]:
    """Decorator adding ``options`` to a command and passing their values as one ``cls`` in ``name``."""

    def deco(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs[name] = cls(**{f: kwargs.pop(f) for f in fields})
            return command(*args, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper  # type: ignore[return-value]

    return deco


def run_options(*, method: bool = True, size_help: str = "Run at this internal resolution (shorter side); outputs stay at the input size.") -> Callable[[F], F]:
    """The :class:`RunOptions` options (``--method`` only with ``method=True``), passed as ``run``."""
    d = RunOptions()
    options = [
        *([click.option("--method", default=d.method, show_default=True, help=METHOD_HELP)] if method else []),
        click.option("--flow", default=d.flow, help=FLOW_HELP),
        click.option("--weights", default=d.weights, help="Method weights: a file, a weights.toml entry, or 'random' (speed measurements only)."),
        flow_weights_option,
        offline_option,
        device_option,
        click.option("--precision", type=click.Choice(PRECISION_NAMES), default=d.precision, show_default=True, help="Network precision (autocast)."),
        click.option("--size", type=click.IntRange(16, 4096), default=d.size, help=size_help),
        click.option("--resize-mask", is_flag=True, default=d.resize_mask, help="Scale masks whose size differs from the video (nearest neighbour)."),
        click.option("--compile", is_flag=True, default=d.compile, help="torch.compile the network (CUDA)."),
    ]
    fields = ("method",) * method + ("flow", "weights", "flow_weights", "offline", "device", "precision", "size", "resize_mask", "compile")
    return _grouped(RunOptions, "run", options, fields)


def output_options() -> Callable[[F], F]:
    """The :class:`OutputOptions` options, passed as ``output``."""
    d = OutputOptions()
    options = [
        click.option("--overlay/--no-overlay", default=d.overlay, show_default=True, help="Write overlay.mp4."),
        click.option("--overlay-frames", is_flag=True, default=d.overlay_frames, help="Also write overlays/<frame>.png."),
        click.option("--soft", is_flag=True, default=d.soft, help="Write soft scores soft/<id>/<frame>.png (probability x 255)."),
        click.option("--mattes", is_flag=True, default=d.mattes, help="Write black/white mattes mattes/<id>/<frame>.png."),
        click.option("--resume", is_flag=True, default=d.resume, help="Finish an interrupted run in OUT (same masks as an uninterrupted run)."),
        click.option("--overwrite", is_flag=True, default=d.overwrite, help="Replace the results already in OUT."),
        click.option("--checkpoint-every", type=click.IntRange(1), default=d.checkpoint_every, show_default=True, help="Frames between resume checkpoints."),
    ]
    fields = ("overlay", "overlay_frames", "soft", "mattes", "resume", "overwrite", "checkpoint_every")
    return _grouped(OutputOptions, "output", options, fields)
