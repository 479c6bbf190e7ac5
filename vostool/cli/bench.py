"""``vostool bench``: run a method over DAVIS / YouTube-VOS and score it, score existing
predictions, write server submissions, or measure speed against the number of objects."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ..options import RunOptions, WorkerOptions
from . import log_to_stderr
from .options import run_options, worker_options


def _csv_ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--objects must be comma-separated integers like 1,2,4,8, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise InputError(f"--objects must list positive integers, got {text!r}")
    return vals


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@click.command("bench")
@click.option(
    "--dataset",
    type=click.Choice(["auto", "davis17", "davis16", "ytvos"]),
    default="auto",
    show_default=True,
    help="Benchmark layout (auto: from the files under --root).",
)
@click.option("--root", type=click.Path(path_type=Path), help="Dataset folder (holds Annotations/ and ImageSets/, or meta.json).")
@click.option("--split", default="val", show_default=True, help="Split: val, train, test-dev, valid ...")
@click.option("--resolution", default=None, help="DAVIS resolution folder: 480p (default), Full-Resolution, 1080p, 240p ...")
@click.option("--sequences", default=None, metavar="A,B,...", help="Only these sequences.")
@click.option("--method", default=None, help="Method to run (comma-separated with --speed).")
@run_options(
    method=False, size_help="Internal resolution of the method (shorter side); with --speed, the height of the clip (default 480)."
)
@click.option("--eval-only", is_flag=True, help="Score the predictions in --results without running a method.")
@click.option(
    "--results",
    type=click.Path(path_type=Path),
    help="Predictions folder <results>/<seq>/<frame>.png (read with --eval-only, written otherwise).",
)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Where the CSV/JSON reports (or speed plots) go (default: the results folder)."
)
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Scoring threads (default: CPU cores, at most 8).")
@click.option(
    "--resize", is_flag=True, help="Scale predictions of another size to the ground truth (nearest neighbour) instead of failing."
)
@click.option(
    "--json", "json_path", type=click.Path(path_type=Path), help="Where the JSON report goes (default: <output>/results-<split>.json)."
)
@click.option(
    "--submission", type=click.Path(path_type=Path), metavar="ZIP", help="Write the zip the DAVIS test-dev / YouTube-VOS server expects."
)
@click.option("--speed", is_flag=True, help="Measure FPS against the number of objects (--objects) and plot it.")
@click.option("--objects", default="1,2,4,8", show_default=True, help="Object counts for --speed.")
@click.option("--frames", type=click.IntRange(5, 100000), default=30, show_default=True, help="Frames per measurement for --speed.")
@click.option("--strict", is_flag=True, help="Frames without ground truth are an error (default: a warning, and not scored).")
@worker_options(
    workers_flag="--run-workers",
    workers_help="Workers that run the method, a sequence at a time: local processes (default 1: in this process), or Ray actors with --ray.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress or table on stderr.")
def bench(
    dataset: str,
    root: Path | None,
    split: str,
    resolution: str | None,
    sequences: str | None,
    method: str | None,
    run: RunOptions,
    eval_only: bool,
    results: Path | None,
    output: Path | None,
    workers: int | None,
    resize: bool,
    json_path: Path | None,
    submission: Path | None,
    speed: bool,
    objects: str,
    frames: int,
    strict: bool,
    parallel: WorkerOptions,
    quiet: bool,
) -> None:
    """Score a method on DAVIS 2016/2017 or YouTube-VOS with numbers equal to the official evaluation.

    Writes global_results-<split>.csv and per-sequence_results-<split>.csv (the official files),
    results-<split>.json (everything, with per-frame values and timings), prints a table on
    stderr and the global CSV on stdout.

    \b
    Examples:
      vostool bench --dataset davis17 --root DAVIS/ --split val --method agss
      vostool bench --dataset ytvos --root YTVOS/ --split valid --method agss --ray auto
      vostool bench --eval-only --results my_masks/ --root DAVIS/
      vostool bench --root DAVIS/ --split test-dev --method flow --flow dis --submission td.zip
      vostool bench --speed --objects 1,2,4,8 --size 480 --method flow,agss --weights random
    """
    if quiet:
        console: Any = _Silent()
    else:
        from rich.console import Console

        console = Console(stderr=True)

    def open_root() -> Any:
        from ..datasets import open_dataset

        only = [s for s in (sequences or "").split(",") if s] or None
        return open_dataset(root, kind=dataset, split=split, resolution=resolution, sequences=only)

    with log_to_stderr(logging.WARNING):  # warnings of the dataset layer and of scoring
        if speed:
            if not method:
                raise InputError("--speed needs --method NAME[,NAME...]")
            runs = [dataclasses.replace(run, method=m, size=None) for m in method.split(",") if m]
            _speed(
                open_root() if root is not None else None,
                runs,
                _csv_ints(objects),
                run.size or 480,
                frames,
                output or Path("bench-speed"),
                console,
            )
            return
        if root is None:
            raise InputError("--root is required: the dataset folder (e.g. DAVIS/ with Annotations/ and ImageSets/)")
        if eval_only and method:
            raise InputError("--eval-only scores existing predictions; drop --method, or drop --eval-only to run the method")
        if eval_only and results is None:
            raise InputError("--eval-only needs --results DIR, the folder of <sequence>/<frame>.png predictions")
        if not eval_only and not method:
            if results is None:
                raise InputError("give --method NAME to run a method, or --eval-only --results DIR to score predictions")
            eval_only = True
        _bench(
            open_root(),
            None if eval_only else dataclasses.replace(run, method=str(method)),
            results,
            output,
            workers or _default_workers(),
            resize,
            json_path,
            submission,
            console,
            parallel,
            strict=strict,
        )


class _Silent:
    """``-q``'s console and progress bar in one: shows nothing, and rich is never imported (a
    fifth of a quiet ``--eval-only`` run's start-up)."""

    quiet = True

    @property
    def console(self) -> _Silent:
        return self

    def print(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def advance(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(console: Any) -> Any:
    if console.quiet:
        return console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True
    )


def _bench(
    ds: Any,
    run: RunOptions | None,
    results: Path | None,
    output: Path | None,
    workers: int,
    resize: bool,
    json_path: Path | None,
    submission: Path | None,
    console: Any,
    parallel: WorkerOptions,
    *,
    strict: bool = False,
) -> None:
    """Score predictions (``run`` None) or run a method and score its masks; reports and submission."""
    from ..bench.scoring import evaluate, has_ground_truth

    score = any(has_ground_truth(s) for s in ds.sequences)
    settings: dict[str, Any] = {"root": str(ds.root), "resolution": ds.resolution}
    with _progress(console) as prog:
        if run is None:
            assert results is not None
            task = prog.add_task("scoring", total=len(ds.sequences))
            result = (
                evaluate(ds, results, workers=workers, resize=resize, strict=strict, on_sequence=lambda r: prog.advance(task))
                if score
                else None
            )
            settings["results"] = str(results)
        else:
            from ..batch import make_executor
            from ..bench.runner import run_benchmark
            from ..inference.builder import create_session
            from ..models import method_info

            if parallel.ray is None and (parallel.workers or 1) <= 1:
                session: Any = create_session(run)  # in this process: a missing weights file stops here at once
                executor = None
                flow_name = session.describe()["flow"]
            else:
                session, executor = run, make_executor(parallel)
                info = method_info(run.method)
                flow_name = (run.flow or info.default_flow) if info.method_class.uses_flow else None
            if results is None:
                results = Path("bench-results") / f"{ds.kind}-{ds.split}-{run.method}{'-' + flow_name if flow_name else ''}"
            task = prog.add_task(run.method, total=len(ds.sequences))

            def done(name: str, method_run: Any) -> None:
                prog.advance(task)
                prog.console.print(f"{name}: {method_run.frames} frames, {method_run.fps:.1f} fps")

            result = run_benchmark(session, ds, results, workers=workers, score=score, strict=strict, on_sequence=done, executor=executor)
            ran = result.session
            settings.update(
                results=str(results),
                method=run.method,
                flow=ran.get("flow", flow_name),
                device=ran.get("device"),
                size=run.size,
                precision=run.precision,
                weights=ran.get("weights"),
                workers=workers,
                run_workers=executor.describe() if executor is not None else {"kind": "inline", "workers": 1},
            )
            result = result if score else None
    if submission is not None:
        from ..bench.submission import write_submission

        n = write_submission(ds, results, submission)
        console.print(f"submission: {n} masks -> {submission}")
    if result is None:
        console.print(
            f"{ds.kind} {ds.split} has no ground truth beyond the first frames: nothing to score"
            + ("" if submission else "; use --submission to make the server's zip")
        )
        return
    from ..bench.report import global_csv, print_table, write_reports

    paths = write_reports(result, output or results, settings, json_path=json_path)
    if not console.quiet:  # (laying the table out would import rich for nothing)
        print_table(result, console)
    console.print(f"reports: {paths['global']}, {paths['per_sequence']}, {paths['json']}")
    click.echo(global_csv(result), nl=False)


def _speed(ds: Any, runs: list[RunOptions], counts: list[int], height: int, frames: int, output: Path, console: Any) -> None:
    """FPS and stage times of each method against the object count, on a dataset's first sequence or a synthetic clip."""
    from rich.table import Table

    from ..bench.report import plot_speed
    from ..bench.speed import real_clip, speed_table
    from ..datasets import speed_clip
    from ..inference.builder import create_session
    from ..io.atomic import write_text_atomic

    if ds is not None:
        seq = ds.sequences[0]
        clip_for = lambda k: real_clip(ds, seq, k, height, frames)  # noqa: E731
        source = f"{ds.kind}/{seq.name}"
    else:
        clip_for = lambda k: speed_clip(k, height, frames)  # noqa: E731
        source = "synthetic"
    labels = [r.method + (f" ({r.flow})" if r.flow else "") for r in runs]
    rows = speed_table(
        list(zip(labels, [lambda r=r: create_session(r) for r in runs])),
        counts,
        clip_for,
        on_row=lambda r: console.print(f"{r['method']}: {r['objects']} object(s) {r['fps']:.1f} fps"),
    )
    for r in rows:
        r["source"] = source
    output.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output / "speed.json", json.dumps({"precision": runs[0].precision, "height": height, "rows": rows}, indent=1) + "\n")
    plots = plot_speed(rows, output)
    t = Table(title=f"speed on {source} clips, {height}p, {frames} frames")
    stages = list(dict.fromkeys(s for r in rows for s in r["stages"]))
    for col in ("method", "objects", "fps", "ms/frame", *[f"{s} ms" for s in stages]):
        t.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        t.add_row(
            r["method"],
            str(r["objects"]),
            f"{r['fps']:.1f}",
            f"{r['ms_per_frame']:.1f}",
            *[f"{r['stages'].get(s, 0.0):.1f}" for s in stages],
        )
    console.print(t)
    console.print(f"speed: {output / 'speed.json'}, {plots['fps']}, {plots['stages']}")
    click.echo("method,objects,fps")
    for r in rows:
        click.echo(f"{r['method']},{r['objects']},{r['fps']:.2f}")
    sys.stdout.flush()
