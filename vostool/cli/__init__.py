"""``vostool`` command line: the root group, its subcommands, and error mapping.

User errors (:class:`vostool.errors.VostoolError` and click usage errors) print one line on
stderr and exit non-zero without a traceback; ``VOSTOOL_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator

import click

from ..version import __version__

SUBCOMMANDS = ("segment", "batch", "bench", "weights", "train")
"""Each command is the function of that name in the module of that name."""


class LazyGroup(click.Group):
    """Imports each subcommand's module only when it is used (keeps --help fast)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        command: click.Command = getattr(importlib.import_module(f"{__name__}.{name}"), name)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vostool")
def cli() -> None:
    """Semi-supervised video object segmentation: give a video and the first frame's mask,
    get every frame's masks.

    \b
    Examples:
      vostool segment clip.mp4 --mask f0.png -o out/
      vostool segment frames/ --mask 0:f0.png --mask 30:f30.png --method agss -o out/
      vostool batch clips/ -o out/ --workers 2
      vostool bench --dataset davis17 --root DAVIS/ --split val --method flow
      vostool weights list
    """


class _EchoHandler(logging.Handler):
    """vostool's log records as ``vostool: message`` lines on stderr (``vostool: warning: ...``)."""

    def emit(self, record: logging.LogRecord) -> None:
        kind = "warning: " if record.levelno >= logging.WARNING else ""
        click.echo(f"vostool: {kind}{record.getMessage()}", err=True)


@contextlib.contextmanager
def log_to_stderr(level: int = logging.INFO) -> Iterator[None]:
    """Show the library's log records (logger ``vostool``) of ``level`` and above on stderr
    while a command runs: notes (mask summaries) at INFO, warnings always."""
    handler = _EchoHandler(level)
    logger = logging.getLogger("vostool")
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(min(level, logging.WARNING))
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the CLI with one-line errors."""
    from ..errors import VostoolError

    debug = os.environ.get("VOSTOOL_DEBUG", "") not in ("", "0")
    try:
        cli.main(args=argv, prog_name="vostool", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("vostool: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        if debug:
            raise
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see '{ctx.command_path} --help')"
        click.echo(f"vostool: error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)
    except VostoolError as exc:
        if debug:
            raise
        click.echo(f"vostool: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        click.echo("vostool: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # an unexpected failure: still one line, traceback on demand
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(f"vostool: internal error: {type(exc).__name__}: {first} (set VOSTOOL_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)
