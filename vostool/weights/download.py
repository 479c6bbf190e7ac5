"""Fetching weight files: Hugging Face hub (``hf_hub_download``) or plain HTTPS, verified by sha256.

Nothing fetched here is used before its sha256 matches the manifest: a URL download goes to a
temporary file under the vostool cache's ``downloads/`` and is handed back only once its size
and hash are right; a hub file that fails the check is removed from the Hugging Face cache
again. Progress bars are drawn with rich on stderr.

Offline mode (``--offline``, ``VOSTOOL_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``, read at call time)
never opens a connection. ``HF_ENDPOINT`` is read at call time too.
"""

from __future__ import annotations

import functools
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from ..errors import WeightsError
from ..version import __version__
from .cache import downloads_dir, evict_hf_file
from .manifest import WeightsEntry
from .serialization import sha256_file

_TRUE = {"1", "true", "yes", "on"}
_CHUNK = 1 << 20


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether ``VOSTOOL_OFFLINE`` or ``HF_HUB_OFFLINE`` is set true."""
    if offline is not None:
        return offline
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("VOSTOOL_OFFLINE", "HF_HUB_OFFLINE"))


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=False,
        disable=not enabled,
    )
    with bar:
        yield bar


class _RichBar:
    """A tqdm-compatible progress bar (what ``hf_hub_download(tqdm_class=...)`` needs) drawn by rich."""

    def __init__(
        self, *, enabled: bool = True, label: str = "", desc: str = "", total: int | None = None, initial: int = 0, **_: Any
    ) -> None:
        self._cm: Any = _progress(enabled)
        self._bar = self._cm.__enter__()
        self._task = self._bar.add_task(label or desc, total=total, completed=initial)

    def update(self, n: int = 1) -> None:
        self._bar.advance(self._task, n)

    def close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = None

    def __enter__(self) -> _RichBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mismatch(entry: WeightsEntry, digest: str, what: str) -> WeightsError:
    return WeightsError(
        f"{what} for {entry.name} has sha256 {digest[:16]}... but weights.toml pins {entry.sha256[:16]}...; "
        "it was discarded (the source changed or the transfer is corrupt)"
    )


def _open_url(entry: WeightsEntry, timeout: float) -> Any:
    url = entry.source.url
    req = urllib.request.Request(url, headers={"User-Agent": f"vostool/{__version__}"})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise WeightsError(
            f"download of {entry.name} failed: HTTP {exc.code} {exc.reason} from {url}; "
            f"try again later or use `vostool weights import {entry.name} FILE`"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(
            f"cannot reach {urlparse(url).netloc} for {entry.name} ({reason}); "
            f"on an offline machine use `vostool weights import {entry.name} FILE`"
        ) from exc


def fetch_url(entry: WeightsEntry, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``entry``'s URL source to a temporary file and verify it.

    For a ``member`` source the archive is downloaded, the member extracted, and the member is
    what gets verified. The caller owns (and must move or delete) the returned file.

    Returns:
        Path of a verified temporary file under the cache's ``downloads/`` folder.

    Raises:
        WeightsError: HTTP error, unreachable host, short transfer, bad archive, wrong size or
            wrong sha256 (nothing is kept in these cases).
    """
    member = entry.source.member
    fd, name = tempfile.mkstemp(prefix=f"{entry.name}.", suffix=".part", dir=downloads_dir())
    os.close(fd)
    part = Path(name)
    try:
        got = 0
        with _open_url(entry, timeout) as resp, open(part, "wb") as out, _progress(progress) as bar:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            task = bar.add_task(entry.name, total=total)
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (OSError, ValueError, http.client.HTTPException) as exc:
                    raise WeightsError(
                        f"download of {entry.name} broke off after {got} bytes ({type(exc).__name__}); run the pull again"
                    ) from exc
                if not chunk:
                    break
                out.write(chunk)
                got += len(chunk)
                bar.advance(task, len(chunk))
                if not member and got > entry.size:
                    raise WeightsError(
                        f"download of {entry.name} is larger than the {entry.size} bytes weights.toml pins; it was discarded"
                    )
        if total is not None and got != total:
            raise WeightsError(f"download of {entry.name} was cut short ({got} of {total} bytes); run the pull again")
        if member:
            archive, part = part, _extract_member(entry, part)
            archive.unlink()
        size = part.stat().st_size
        if size != entry.size:
            raise WeightsError(f"{entry.name}: got {size} bytes but weights.toml pins {entry.size}; the file was discarded")
        digest = sha256_file(part)
        if digest != entry.sha256:
            raise _mismatch(entry, digest, "the download")
        return part
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _extract_member(entry: WeightsEntry, archive: Path) -> Path:
    """Copy ``entry.source.member`` out of the zip ``archive`` into a temporary file."""
    member = entry.source.member
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError as exc:
                raise WeightsError(f"the archive downloaded for {entry.name} has no {member}; the release changed, report it") from exc
            if info.file_size != entry.size:
                raise WeightsError(
                    f"{member} in the archive for {entry.name} is {info.file_size} bytes, weights.toml pins {entry.size}; it was discarded"
                )
            fd, name = tempfile.mkstemp(prefix=f"{entry.name}.", suffix=".member", dir=archive.parent)
            with zf.open(info) as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            return Path(name)
    except zipfile.BadZipFile as exc:
        raise WeightsError(
            f"the download for {entry.name} is not a zip archive; the release changed or a proxy answered, try again later"
        ) from exc


def fetch_hf(entry: WeightsEntry, *, offline: bool = False, progress: bool = True) -> Path:
    """Get ``entry``'s hub file through ``hf_hub_download`` at the pinned revision and verify it.

    The file lives in the standard Hugging Face cache. With ``offline`` only the cache is
    looked at. A file whose sha256 is wrong is evicted from the cache before the error.

    Returns:
        Path of the verified file in the Hugging Face cache.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    src = entry.source
    try:
        path = Path(
            hf_hub_download(
                src.repo,
                src.filename,
                revision=src.revision,
                library_name="vostool",
                library_version=__version__,
                endpoint=os.environ.get("HF_ENDPOINT") or None,
                local_files_only=offline,
                tqdm_class=functools.partial(_RichBar, enabled=progress, label=entry.name),  # type: ignore[arg-type]
            )
        )
    except LocalEntryNotFoundError as exc:
        if offline:
            raise WeightsError(
                f"{entry.name} is not in the Hugging Face cache and offline mode is on; pull it on a connected machine or use `vostool weights import {entry.name} FILE`"
            ) from exc
        cause = exc.__cause__
        if isinstance(cause, HfHubHTTPError) and cause.response is not None:
            raise WeightsError(
                f"the Hugging Face hub answered HTTP {cause.response.status_code} for {entry.name}; try again later or use `vostool weights import {entry.name} FILE`"
            ) from exc
        raise WeightsError(
            f"cannot reach the Hugging Face hub for {entry.name} and it is not cached; check the network or use `vostool weights import {entry.name} FILE`"
        ) from exc
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise WeightsError(
            f"the hub has no {src.repo}/{src.filename} at revision {src.revision[:12]} ({type(exc).__name__}); the manifest entry {entry.name} is stale, report it"
        ) from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise WeightsError(
            f"the Hugging Face hub answered HTTP {status} for {entry.name}; try again later or use `vostool weights import {entry.name} FILE`"
        ) from exc
    except Exception as exc:  # transport errors (their types depend on the huggingface_hub version)
        first = (str(exc).splitlines() or [""])[0][:120]
        raise WeightsError(f"download of {entry.name} from the hub failed ({type(exc).__name__}: {first}); run the pull again") from exc
    digest = sha256_file(path)
    if digest != entry.sha256:
        evict_hf_file(path)
        raise _mismatch(entry, digest, "the hub file")
    return path
