"""Where verified weight files live.

Two caches:

* Hub files that need no conversion stay in the standard Hugging Face cache
  (``HF_HUB_CACHE`` / ``HF_HOME``), at the pinned revision, exactly as ``hf_hub_download`` left
  them.
* Everything else (URL downloads, imports, converted files) goes to the vostool cache,
  ``$VOSTOOL_CACHE`` or ``~/.cache/vostool``, laid out as::

      weights/<name>/<sha256>.<suffix>   the stored file (converted to the loadable layout)
      weights/<name>/record.json         what it is and where it came from (a CacheRecord)
      downloads/                          partial downloads (never read as weights)

Files are written atomically; a record is written only after its file is complete and
verified, so an interrupted pull leaves either the old good file or nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..io.atomic import write_text_atomic
from .manifest import WeightsEntry
from .serialization import sha256_file


def cache_root() -> Path:
    """``$VOSTOOL_CACHE`` or ``~/.cache/vostool`` (read at call time)."""
    return Path(os.environ.get("VOSTOOL_CACHE") or Path.home() / ".cache" / "vostool").expanduser()


def entry_dir(name: str) -> Path:
    return cache_root() / "weights" / name


def downloads_dir() -> Path:
    d = cache_root() / "downloads"
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class CacheRecord:
    """What the vostool cache holds for one entry.

    Attributes:
        name: entry name.
        file: file name inside the entry's folder.
        sha256: sha256 of the stored file (after conversion).
        size: bytes of the stored file.
        layout: key layout of the stored file (``torchvision``, ``vostool``...).
        origin: where the bytes came from (URL, ``hf://...``, or ``import <path>``).
        source_sha256: verified sha256 of the file as published (before conversion).
        pinned: whether ``source_sha256`` matched a sha256 pinned in the manifest.
        converted_from: the original layout, or ``""``.
        unused: original tensors deliberately dropped by the converter, by group (counts).
        created: UTC timestamp.
    """

    name: str
    file: str
    sha256: str
    size: int
    layout: str
    origin: str
    source_sha256: str
    pinned: bool
    converted_from: str = ""
    unused: dict[str, int] = field(default_factory=dict)
    created: str = ""

    @property
    def path(self) -> Path:
        return entry_dir(self.name) / self.file


def read_record(name: str) -> CacheRecord | None:
    """The record of ``name`` in the vostool cache, or None (also for an unreadable record)."""
    p = entry_dir(name) / "record.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return CacheRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def store(name: str, file: Path, record: CacheRecord) -> CacheRecord:
    """Move the verified ``file`` into the cache as ``record.file`` and write the record.

    ``file`` must be on the same filesystem as the cache (it is renamed). Older files of the
    entry are removed only after the new record is in place.
    """
    d = entry_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    os.replace(file, d / record.file)
    record.created = record.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_text_atomic(d / "record.json", json.dumps(asdict(record), indent=2) + "\n")
    for other in d.iterdir():
        if other.name in (record.file, "record.json") or other.name.startswith("."):
            continue
        if other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
        else:
            other.unlink(missing_ok=True)
    return record


def hf_cached_file(entry: WeightsEntry) -> Path | None:
    """The entry's file in the Hugging Face cache at its pinned revision, or None."""
    if entry.source.kind != "hf":
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(entry.source.repo, entry.source.filename, revision=entry.source.revision)
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def evict_hf_file(path: Path) -> None:
    """Remove a Hugging Face cache file (snapshot link and the blob it points to)."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


@dataclass(frozen=True)
class Check:
    """Result of verifying one cached file."""

    name: str
    where: str
    path: Path | None
    ok: bool
    message: str


def check_record(entry: WeightsEntry | None, record: CacheRecord) -> Check:
    """Re-hash a vostool-cache file and compare it with its record (and the manifest pin)."""
    p = record.path
    if not p.is_file():
        return Check(record.name, "vostool", p, False, "file missing; pull or import it again")
    digest = sha256_file(p)
    if digest != record.sha256:
        return Check(
            record.name,
            "vostool",
            p,
            False,
            f"sha256 {digest[:12]}... differs from the recorded {record.sha256[:12]}...; pull or import it again",
        )
    if entry is not None and entry.pinned and record.source_sha256 != entry.sha256:
        return Check(
            record.name, "vostool", p, False, "made from a file whose sha256 is not the one weights.toml pins; pull or import it again"
        )
    note = "ok" if record.pinned else "ok (unpinned: sha256 recorded at import)"
    return Check(record.name, "vostool", p, True, note)


def check_hf(entry: WeightsEntry, path: Path) -> Check:
    """Re-hash a Hugging Face cache file against the manifest pin."""
    digest = sha256_file(path)
    if digest != entry.sha256:
        return Check(
            entry.name,
            "hf",
            path,
            False,
            f"sha256 {digest[:12]}... is not the pinned {entry.sha256[:12]}...; run `vostool weights pull {entry.name}`",
        )
    return Check(entry.name, "hf", path, True, "ok")
