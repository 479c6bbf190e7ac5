"""``vostool batch``: many videos, each segmented into ``OUT/<name>/`` as ``vostool segment`` does."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import VostoolError
from ..options import OutputOptions, RunOptions, WorkerOptions
from .options import output_options, run_options, worker_options


@click.command("batch")
@click.argument("jobs", type=click.Path(path_type=str))
@click.option("-o", "--out", required=True, type=click.Path(path_type=str), help="Output folder: OUT/<name>/ per video, OUT/batch.json.")
@run_options()
@output_options(resume=False)
@worker_options()
@click.option("--json", "as_json", is_flag=True, help="Print the counts, failed jobs and timing summary as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no line per job.")
def batch(jobs: str, out: str, run: RunOptions, output: OutputOptions, parallel: WorkerOptions, as_json: bool, quiet: bool) -> None:
    """Segment every video of JOBS into OUT/<name>/, in parallel; run it again to resume.

    JOBS is a folder of NAME.mp4 (or NAME/ frame folders) with NAME_mask.png (or a NAME_masks/
    folder) beside each, or a CSV / JSONL manifest with columns video, mask (frame 0, or N:FILE;
    several separated by ';'), masks, name, fps, and per-job method, flow, weights, size, precision.

    Finished videos are skipped, interrupted ones resumed; a failed video is listed with its error
    in OUT/batch.json and the others go on (the exit status is 1 if any failed).

    \b
    Examples:
      vostool batch clips/ -o out/                       # one worker per core
      vostool batch jobs.csv -o out/ --method agss --size 240 --workers 2
      vostool batch clips/ -o /shared/out --ray auto     # on a Ray cluster (pip install 'vostool[ray]')
    """
    from ..api import segment_batch

    # print(), not click.echo: the progress bar redirects sys.stderr to show these lines above itself
    say = None if quiet else (lambda line: print(f"vostool: {line}", file=sys.stderr, flush=True))
    report = segment_batch(jobs, out, run=run, output=output, parallel=parallel, progress=not quiet and sys.stderr.isatty(), say=say)
    counts, summary = report["counts"], report["summary"]
    if as_json:
        click.echo(json.dumps({"counts": counts, "failed": report["failed"], "summary": summary, "executor": report["executor"]}, indent=2))
    if not quiet:
        for line in summary_lines(report):
            click.echo(f"vostool: {line}", err=True)
    if counts["failed"]:
        first = report["failed"][0]
        raise VostoolError(
            f"{counts['failed']} of {counts['jobs']} jobs failed (first: {first['name']}: {first['error']}); see {report['out']}/batch.json",
            exit_code=1,
        )


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The closing lines: counts, frames/s, per-stage ms per frame, per-job overhead."""
    c, s, ex = report["counts"], report["summary"], report["executor"]
    where = f"{ex.get('workers')} {ex['kind']} worker(s)" if ex["kind"] != "inline" else "this process"
    lines = [
        f"{c['jobs']} jobs: {c['done']} done, {c['skipped']} skipped (complete already), {c['failed']} failed -> {report['out']} ({where})"
    ]
    if s.get("jobs_run"):
        stages = ", ".join(f"{k} {v['ms_per_frame']:.1f}" for k, v in s.get("stages", {}).items())
        lines.append(f"{s['frames']} frames in {s['wall_seconds']:.1f} s: {s['frames_per_second']} frames/s; ms per frame: {stages}")
        lines.append(
            f"per job: median {s['job_seconds_median']:.2f} s, of which {s['job_overhead_seconds_median']:.2f} s outside the frame loop; "
            f"model loads {s['session_setup_seconds_total']:.1f} s in all"
            + (
                f"; worker start-up {', '.join(f'{x:.1f}' for x in ex['worker_startup_seconds'])} s"
                if ex.get("worker_startup_seconds")
                else ""
            )
        )
    return lines
