"""Benchmarks: J and F equal to the official evaluation, running a method over a split, reports, speed.

    from vostool.datasets import open_dataset
    from vostool.bench import evaluate
    result = evaluate(open_dataset("DAVIS", split="val"), "my_masks/", workers=4)
    result.global_metrics()["J&F-Mean"]

Modules: ``metrics`` (J, F, statistics), ``scoring`` (scoring a results folder in parallel),
``runner`` (running a session over a split), ``report`` (CSV, JSON, tables, plots),
``submission`` (server zips), ``speed`` (FPS vs objects), ``reference`` (a slow literal
implementation used to verify the fast one). Dataset layouts are :mod:`vostool.datasets`.
"""

from .scoring import BenchResult, evaluate

__all__ = ["BenchResult", "evaluate"]
