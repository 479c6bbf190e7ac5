"""DAVIS 2016 / 2017 and YouTube-VOS folders, for benchmarks and for training alike.

* :mod:`.layouts` — which folders hold frames and annotations, split files, YouTube-VOS
  ``meta.json``: :func:`open_dataset` -> :class:`Dataset` of :class:`SequenceInfo`.
* :mod:`.annotations` — ground truth as object ids with the benchmarks' void rule.
* :mod:`.splits` — split files and the held-out validation split of ``davis16-train-240p``.
* :mod:`.sequences` — annotated videos read into memory (:func:`load_dataset`), for training.
* :mod:`.synthetic` — synthetic videos with exact labels (pretraining, tests, speed clips).
"""

from .annotations import binary_ids, read_annotation, read_annotation_boxed
from .layouts import Dataset, SequenceInfo, open_dataset
from .sequences import VideoSequence, load_dataset
from .splits import davis16_val_split, held_out_names, read_split_file
from .synthetic import generate_dataset, generate_video, speed_clip

__all__ = [
    "Dataset",
    "SequenceInfo",
    "VideoSequence",
    "binary_ids",
    "davis16_val_split",
    "generate_dataset",
    "generate_video",
    "held_out_names",
    "load_dataset",
    "open_dataset",
    "read_annotation",
    "read_annotation_boxed",
    "read_split_file",
    "speed_clip",
]
