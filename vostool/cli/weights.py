"""``vostool weights``: list, pull, verify and import the weight sets of ``weights.toml``."""

from __future__ import annotations

import json
import sys

import click

from .options import offline_option


@click.group("weights")
def weights() -> None:
    """Pretrained weights: what exists, what is cached, download, verify, import.

    \b
    Files are pinned by sha256 in weights.toml. Hub files live in the Hugging Face cache;
    everything else in $VOSTOOL_CACHE (default ~/.cache/vostool).

    \b
    Examples:
      vostool weights list
      vostool weights pull raft-small.things
      vostool weights import raft-small.things ~/Downloads/raft-small.pth   # offline machines
      vostool weights verify
    """


@weights.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def list_cmd(as_json: bool) -> None:
    """What exists, what is cached, and what each method needs.

    \b
    Example:
      vostool weights list --json
    """
    from ..weights import load_manifest, status

    m = load_manifest()
    rows = status(m)
    if as_json:
        data = {
            "entries": [
                {
                    "name": r.entry.name,
                    "target": r.entry.target,
                    "default": r.default,
                    "trained_on": r.entry.trained_on,
                    "licence": r.entry.licence,
                    "source": r.entry.source.describe(),
                    "downloadable": r.entry.source.downloadable,
                    "sha256": r.entry.sha256 or None,
                    "size": r.entry.size or None,
                    "num_params": r.entry.num_params,
                    "metrics": r.entry.metrics,
                    "cached": str(r.cached) if r.cached else None,
                }
                for r in rows
            ],
            "targets": {t.name: {"kind": t.kind, "default": t.default or None, "how": t.how or None} for t in m.targets.values()},
        }
        click.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"weights ({m.path})", title_justify="left")
    for col in ("name", "for", "trained on", "licence", "source", "cached"):
        table.add_column(col, no_wrap=col in ("name", "for", "cached"))
    for r in rows:
        src = r.entry.source
        where = "no" if r.cached is None else ("yes (hub cache)" if r.cache_kind == "hf" else "yes")
        table.add_row(
            r.entry.name + (" *" if r.default else ""),
            r.entry.target,
            r.entry.trained_on,
            r.entry.licence,
            src.kind if src.kind != "manual" else "manual download",
            where,
        )
    console.print(table)
    console.print("* default for its method/flow. Targets:")
    for t in m.targets.values():
        need = f"default {t.default}" if t.default else "no published weights"
        console.print(f"  {t.name} ({t.kind}): {need}" + (f". {t.how}" if t.how else ""))


@weights.command("pull")
@click.argument("names", nargs=-1, required=True)
@offline_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def pull_cmd(names: tuple[str, ...], offline: bool | None, quiet: bool) -> None:
    """Download weight sets NAMES (verified by sha256) unless already cached.

    \b
    Example:
      vostool weights pull raft-small.things
    """
    from ..weights import pull

    for name in names:
        r = pull(name, offline=offline, progress=not quiet and sys.stderr.isatty())
        click.echo(f"{r.name}\t{r.resolved_by}\t{r.sha256}\t{r.path}")


@weights.command("verify")
@click.argument("names", nargs=-1)
def verify_cmd(names: tuple[str, ...]) -> None:
    """Re-hash cached files against weights.toml (all cached ones, or NAMES).

    Exits with status 3 if any file fails.

    \b
    Example:
      vostool weights verify raft-small.things
    """
    from ..errors import WeightsError
    from ..weights import verify

    checks = verify(list(names) or None)
    for c in checks:
        click.echo(f"{'OK  ' if c.ok else 'FAIL'}\t{c.name}\t{c.where or '-'}\t{c.message}\t{c.path or ''}")
    if not checks:
        click.echo("nothing cached; see `vostool weights list`", err=True)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise WeightsError(f"{len(failed)} cached weight file(s) failed verification: {', '.join(sorted(set(failed)))}")


@weights.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=str))
def import_cmd(name: str, file: str) -> None:
    """Verify FILE as weight set NAME and place it (converted if needed) in the cache.

    For machines without internet: copy the published file over and import it.

    \b
    Example:
      vostool weights import raft-small.things raft-small.pth
    """
    from ..weights import import_weights

    rec = import_weights(name, file)
    click.echo(f"{rec.name}\timported\t{rec.sha256}\t{rec.path}")
    extra = f", converted from {rec.converted_from}" if rec.converted_from else ""
    unused = "; ".join(f"{k}: {v} tensors not used" for k, v in rec.unused.items())
    pin = "sha256 matches weights.toml" if rec.pinned else "UNPINNED: weights.toml has no sha256 for it, recorded the file's own"
    click.echo(f"vostool: {rec.name}: {pin}{extra}" + (f" ({unused})" if unused else ""), err=True)
