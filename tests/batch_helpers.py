"""Shared by the batch tests: a folder of small clips, their masks as ``vostool segment`` makes
them one by one, and an executor wrapper that kills the first worker handed a task."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np

from synthetic_videos import moving_objects, write_folder, write_mp4
from vostool.io.masks import read_index_png, write_index_png

CLIPS = {"a_mp4": 10, "b_frames": 12, "c_later": 10}
"""Clip name -> frames: an mp4 with a first-frame mask, a frame folder, an mp4 with a masks folder
whose second object is given on frame 4."""


def make_clips(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate(CLIPS.items()):
        frames, masks = moving_objects(n, 64, 96, objects=2, seed=i, speed=1.5)
        if name == "b_frames":
            write_folder(folder / name, frames)
        else:
            write_mp4(folder / f"{name}.mp4", frames, fps=10)
        if name == "c_later":
            (folder / f"{name}_masks").mkdir()
            write_index_png(folder / f"{name}_masks" / "00000.png", np.where(masks[0] == 1, 1, 0).astype(np.uint8))
            write_index_png(folder / f"{name}_masks" / "00004.png", np.where(masks[4] == 2, 2, 0).astype(np.uint8))
        else:
            write_index_png(folder / f"{name}_mask.png", masks[0])
    return folder


def reference_masks(clips: Path, out: Path) -> Path:
    """Each clip segmented on its own by :func:`vostool.segment` (flow + DIS on the CPU, no overlay)."""
    import vostool

    for name in CLIPS:
        video = clips / f"{name}.mp4" if (clips / f"{name}.mp4").exists() else clips / name
        mask = clips / f"{name}_mask.png"
        masks_dir = clips / f"{name}_masks"
        vostool.segment(
            video,
            mask if mask.exists() else None,
            out / name,
            masks_dir=masks_dir if masks_dir.exists() else None,
            device="cpu",
            overlay=False,
        )
    return out


def assert_same_masks(a: Path, b: Path) -> None:
    """Every clip's masks in ``b`` are byte-identical to those in ``a``."""
    for name, n in CLIPS.items():
        files = sorted((a / name / "masks").glob("[!.]*.png"))
        assert len(files) == n
        for f in files:
            assert (b / name / "masks" / f.name).read_bytes() == f.read_bytes(), f"{name}/{f.name} differs"
        assert read_index_png(files[-1]).max() == 2  # both objects tracked to the end


class KillFirstWorker:
    """Wraps an executor: the first worker handed a task is killed (SIGKILL) at once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.killed: list[tuple[str, int]] = []

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def run(self, tasks: list, work: Any, on_event: Any) -> None:
        def hook(event: Any) -> None:
            if event.kind == "start" and not self.killed and event.pid and event.pid != os.getpid():
                self.killed.append((event.name, event.pid))
                os.kill(event.pid, signal.SIGKILL)
            on_event(event)

        self.inner.run(tasks, work, hook)
