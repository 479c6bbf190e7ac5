"""Benchmarks: DAVIS / YouTube-VOS layouts, J and F equal to the official evaluation, reports, speed.

    from vostool.bench import open_dataset, evaluate
    result = evaluate(open_dataset("DAVIS", split="val"), "my_masks/", workers=4)
    result.global_metrics()["J&F-Mean"]

Modules: ``datasets`` (layouts), ``metrics`` (J, F, statistics), ``scoring`` (scoring a
results folder in parallel), ``runner`` (running a session over a split), ``report`` (CSV,
JSON, tables, plots), ``submission`` (server zips), ``speed`` (FPS vs objects),
``reference`` (a slow literal implementation used to verify the fast one).
"""

from .datasets import Dataset, SequenceInfo, open_dataset
from .scoring import BenchResult, evaluate

__all__ = ["Dataset", "SequenceInfo", "open_dataset", "BenchResult", "evaluate"]
