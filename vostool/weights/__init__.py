"""Weights: the manifest (``weights.toml``), downloads pinned by sha256, the caches, offline
import, converters for the authors' original checkpoints, and safe, strict loading.

``weights/`` owns where bytes come from and whether they can be trusted; it builds networks
only to check that weights fit them.
"""

from .cache import CacheRecord, Check, cache_root
from .converters import (
    Conversion,
    convert,
    convert_agss_original,
    convert_raft_original,
    convert_rgmp_original,
    detect_layout,
    is_raft_original,
    rgmp_init_for,
)
from .download import is_offline
from .manifest import Manifest, Source, Target, WeightsEntry, load_manifest
from .resolve import EntryStatus, ResolvedWeights, build_network, import_weights, pull, resolve_weights, status, verify
from .serialization import load_encoder_weights, load_into, load_state_dict, save_state_dict, sha256_file

__all__ = [
    "CacheRecord",
    "Check",
    "Conversion",
    "EntryStatus",
    "Manifest",
    "ResolvedWeights",
    "Source",
    "Target",
    "WeightsEntry",
    "build_network",
    "cache_root",
    "convert",
    "convert_agss_original",
    "convert_raft_original",
    "convert_rgmp_original",
    "detect_layout",
    "import_weights",
    "is_offline",
    "is_raft_original",
    "load_encoder_weights",
    "load_into",
    "load_manifest",
    "load_state_dict",
    "pull",
    "resolve_weights",
    "rgmp_init_for",
    "save_state_dict",
    "sha256_file",
    "status",
    "verify",
]
