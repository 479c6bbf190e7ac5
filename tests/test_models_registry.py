"""The method registry: names, info, and the ``tiny`` / ``paper`` variants of create_method."""

from __future__ import annotations

import pytest
import torch

from vostool.errors import InputError
from vostool.models import available_methods, create_method, method_info


def test_every_network_method_registers_a_tiny_variant() -> None:
    names = available_methods()
    assert {"flow", "agss", "savos", "ovsnet", "embedding"} <= set(names)
    assert [n for n in names if method_info(n).needs_weights and not method_info(n).tiny] == []
    assert method_info("flow").tiny == {} and create_method("flow", variant="tiny").net is None


def test_variant_merges_the_tiny_kwargs_and_explicit_kwargs_win() -> None:
    tiny = method_info("agss").tiny
    by_variant = create_method("agss", variant="tiny").net.state_dict()
    by_kwargs = create_method("agss", **tiny).net.state_dict()
    assert {k: v.shape for k, v in by_variant.items()} == {k: v.shape for k, v in by_kwargs.items()}
    assert by_variant["decoder.pred2.weight"].shape == (2, tiny["mdim"], 3, 3)
    assert create_method("agss", variant="tiny", mdim=8).net.state_dict()["decoder.pred2.weight"].shape == (2, 8, 3, 3)
    assert create_method("agss", variant="tiny", mdim=None).net.state_dict()["decoder.pred2.weight"].shape == (2, tiny["mdim"], 3, 3)
    # "paper" (like None) starts from the builder's defaults: only the explicit kwargs apply.
    paper = create_method("agss", variant="paper", depth=18, base_width=8).net.state_dict()
    assert paper["decoder.pred2.weight"].shape == (2, 256, 3, 3)


def test_unknown_names_are_one_line_input_errors() -> None:
    with pytest.raises(InputError, match="unknown variant 'small'.*paper, compact, tiny"):
        create_method("agss", variant="small")
    with pytest.raises(InputError, match="unknown method 'nope'; choose one of: .*agss"):
        create_method("nope", variant="tiny")


def test_compact_variants_are_the_shipped_networks_on_imagenet_backbones() -> None:
    """The compact sizes are the shipped ones: each method's compact encoder is the backbone its
    default weights name (savos: EfficientNet-Lite2; embedding, ovsnet: MobileNetV2), BatchNorm
    frozen; explicit kwargs win over the variant's, as for tiny."""
    from vostool.models.backbones import EfficientNetLiteEncoder, MobileNetV2Encoder
    from vostool.train.init import encoders_of
    from vostool.weights import load_manifest

    manifest = load_manifest()
    kinds = {"efficientnet-lite2": EfficientNetLiteEncoder, "mobilenet-v2": MobileNetV2Encoder}
    for name in ("savos", "embedding", "ovsnet"):
        backbone = method_info(name).compact["backbone"]
        assert backbone == manifest.entries[manifest.targets[name].default].arch["backbone"]
        net = create_method(name, variant="compact").net
        encoders = encoders_of(net)
        assert encoders and all(isinstance(e, kinds[backbone]) for e in encoders)
        net.train()
        assert not any(m.training for e in encoders for m in e.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert create_method("savos", variant="compact", mdim=32).net.pred.in_channels == 32


def test_each_method_fact_has_one_typed_place() -> None:
    """The class says whether a method uses flow; the registry gives a default flow exactly then;
    the built method is of the registered class and starts from its own typed state."""
    for name in available_methods():
        info = method_info(name)
        method = create_method(name, variant="tiny")
        assert type(method) is info.method_class and method.name == name
        assert (info.default_flow is not None) == info.uses_flow == method.uses_flow
        assert type(method.init_state()) is info.method_class.state_type
    assert not method_info("savos").uses_flow and method_info("savos").default_flow is None


def test_registering_a_default_flow_for_a_method_without_flow_is_refused() -> None:
    from vostool.models.registry import register_method
    from vostool.models.savos import SAVOS

    with pytest.raises(ValueError, match="default flow"):
        register_method("savos", SAVOS, paper="x", default_flow="dis")
    with pytest.raises(ValueError, match="named 'savos'"):
        register_method("other", SAVOS, paper="x")
