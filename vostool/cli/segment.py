"""``vostool segment``: one video in, every frame's masks out."""

from __future__ import annotations

import json
import sys

import click


@click.command("segment")
@click.argument("video", type=click.Path(path_type=str))
@click.option("--mask", "masks", multiple=True, metavar="[N:]FILE", help="Mask PNG for frame 0, or N:FILE for frame N (repeatable: objects that appear later).")
@click.option("--masks", "masks_dir", type=click.Path(path_type=str), metavar="DIR", help="Folder of frame-numbered mask PNGs (00000.png, 00030.png, ...).")
@click.option("-o", "--out", required=True, type=click.Path(path_type=str), help="Output folder (masks/, overlay.mp4, timing.json, ...).")
@click.option("--method", default="flow", show_default=True, help="Segmentation method: flow, agss, ovsnet, savos, embedding.")
@click.option("--flow", default=None, help="Optical flow: dis, farneback, raft-small, raft-large (default: the method's).")
@click.option("--size", type=click.IntRange(16, 4096), default=None, help="Run at this internal resolution (shorter side); outputs stay at the input size.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True, help="Network precision (autocast).")
@click.option("--weights", default=None, help="Method weights: a file, a weights.toml entry, or 'random' (speed tests only).")
@click.option("--flow-weights", default=None, help="RAFT weights: a file or a weights.toml entry.")
@click.option("--offline", is_flag=True, default=None, help="Never download weights (also HF_HUB_OFFLINE=1).")
@click.option("--resize-mask", is_flag=True, help="Scale masks whose size differs from the video (nearest neighbour).")
@click.option("--overlay/--no-overlay", default=True, show_default=True, help="Write overlay.mp4.")
@click.option("--overlay-frames", is_flag=True, help="Also write overlays/<frame>.png.")
@click.option("--soft", is_flag=True, help="Write soft scores soft/<id>/<frame>.png (probability x 255).")
@click.option("--mattes", is_flag=True, help="Write black/white mattes mattes/<id>/<frame>.png.")
@click.option("--fps", type=float, default=None, help="Frame rate of a frame folder (default 24).")
@click.option("--resume", is_flag=True, help="Finish an interrupted run in OUT (same masks as an uninterrupted run).")
@click.option("--overwrite", is_flag=True, help="Replace the results already in OUT.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=100, show_default=True, help="Frames between resume checkpoints.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the network (CUDA).")
@click.option("--json", "as_json", is_flag=True, help="Print the timing summary as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def segment(video: str, masks: tuple[str, ...], masks_dir: str | None, out: str, method: str, flow: str | None, size: int | None, device: str,
            precision: str, weights: str | None, flow_weights: str | None, offline: bool | None, resize_mask: bool, overlay: bool,
            overlay_frames: bool, soft: bool, mattes: bool, fps: float | None, resume: bool, overwrite: bool, checkpoint_every: int,
            compile_: bool, as_json: bool, quiet: bool) -> None:
    """Segment the objects of VIDEO (a video file or a folder of frames) in every frame.

    \b
    Examples:
      vostool segment clip.mp4 --mask f0.png -o out/
      vostool segment frames/ --mask 0:f0.png --mask 30:f30.png -o out/ --size 480
      vostool segment clip.mp4 --mask f0.png --method agss --flow raft-small -o out/ --json
    """
    from ..api import segment as run

    summary = run(
        video, list(masks) or None, out, masks_dir=masks_dir, method=method, flow=flow, device=device, size=size,
        precision=precision, weights=weights, flow_weights=flow_weights, offline=offline, resize_mask=resize_mask,
        overlay=overlay, overlay_frames=overlay_frames, soft=soft, mattes=mattes, fps=fps, resume=resume,
        overwrite=overwrite, progress=(not quiet and sys.stderr.isatty()), checkpoint_every=checkpoint_every, compile=compile_,
    )
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not quiet:
        click.echo(f"vostool: {summary['frames']} frames -> {out}/masks ({summary.get('fps')} fps, {summary['device']})", err=True)
