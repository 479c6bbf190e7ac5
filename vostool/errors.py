"""User-facing errors.

Every problem a user can fix (bad input, missing weights, unwritable output) raises a
:class:`VostoolError` whose message is one line saying what is wrong and what to do. The CLI
prints it without a traceback (unless ``VOSTOOL_DEBUG=1``) and exits with ``exit_code``.
"""

from __future__ import annotations


class VostoolError(Exception):
    """A problem the user can fix; ``str(err)`` is a one-line message."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(VostoolError):
    """A video, mask, dataset or option given by the user cannot be used."""


class WeightsError(VostoolError):
    """Weights are missing, unreachable, or fail verification."""

    exit_code = 3


class OutputError(VostoolError):
    """The output location cannot be written."""

    exit_code = 4
