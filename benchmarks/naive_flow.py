"""The naive baseline of ``benchmarks/flow_pipeline.py``: the flow method's job in 20 lines, as one
would write it without thought for speed (OpenCV decode, DIS *medium*, remap, PIL palette PNG).

    python benchmarks/naive_flow.py FRAMES_DIR MASK.png OUT_DIR
"""

import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

frames_dir, mask_path, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
ids = np.array(Image.open(mask_path))
ids = np.where(ids == 255, 1, ids) if set(np.unique(ids)) <= {0, 255} else ids  # binary mask: object 1
objs = [i for i in np.unique(ids) if i not in (0, 255)]
palette = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] * 17
prob = np.stack([(ids == i).astype(np.float32) for i in objs], -1)
dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
prev = None
for p in sorted(frames_dir.glob("*.jpg")):
    gray = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2GRAY)
    if prev is not None:
        f = dis.calc(gray, prev, None)
        h, w = gray.shape
        grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).astype(np.float32) + f
        prob = cv2.remap(prob, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR, borderValue=0).reshape(h, w, -1)
    fg = np.concatenate([1 - prob.max(-1, keepdims=True), prob], -1)
    lab = np.array([0, *objs], np.uint8)[fg.argmax(-1)]
    img = Image.fromarray(lab, mode="P")
    img.putpalette(palette)
    img.save(out / f"{p.stem}.png")
    prev = gray
