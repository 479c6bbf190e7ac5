"""``vostool segment``: one video in, every frame's masks out."""

from __future__ import annotations

import json
import logging
import sys

import click

from ..options import OutputOptions, RunOptions
from . import log_to_stderr
from .options import output_options, run_options


@click.command("segment")
@click.argument("video", type=click.Path(path_type=str))
@click.option(
    "--mask",
    "masks",
    multiple=True,
    metavar="[N:]FILE",
    help="Mask PNG for frame 0, or N:FILE for frame N (repeatable: objects that appear later).",
)
@click.option(
    "--masks",
    "masks_dir",
    type=click.Path(path_type=str),
    metavar="DIR",
    help="Folder of frame-numbered mask PNGs (00000.png, 00030.png, ...).",
)
@click.option("-o", "--out", required=True, type=click.Path(path_type=str), help="Output folder (masks/, overlay.mp4, timing.json, ...).")
@run_options()
@output_options()
@click.option("--fps", type=float, default=None, help="Frame rate of a frame folder (default 24).")
@click.option("--json", "as_json", is_flag=True, help="Print the timing summary as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no notes (objects found, summary); warnings and errors still show.")
def segment(
    video: str,
    masks: tuple[str, ...],
    masks_dir: str | None,
    out: str,
    run: RunOptions,
    output: OutputOptions,
    fps: float | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Segment the objects of VIDEO (a video file or a folder of frames) in every frame.

    \b
    Examples:
      vostool segment clip.mp4 --mask f0.png -o out/
      vostool segment frames/ --mask 0:f0.png --mask 30:f30.png -o out/ --size 480
      vostool segment clip.mp4 --mask f0.png --method agss --flow raft-small -o out/ --json
    """
    from ..api import segment as segment_video

    with log_to_stderr(logging.WARNING if quiet else logging.INFO):
        summary = segment_video(
            video,
            list(masks) or None,
            out,
            masks_dir=masks_dir,
            fps=fps,
            run=run,
            output=output,
            progress=not quiet and sys.stderr.isatty(),
        )
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not quiet and not summary.get("already_complete"):
        click.echo(f"vostool: {summary['frames']} frames -> {out}/masks ({summary.get('fps')} fps, {summary['device']})", err=True)
