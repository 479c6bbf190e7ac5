"""The method registry: names, info, and the ``tiny`` / ``paper`` variants of create_method."""

from __future__ import annotations

import pytest

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
    with pytest.raises(InputError, match="unknown variant 'small'.*paper, tiny"):
        create_method("agss", variant="small")
    with pytest.raises(InputError, match="unknown method 'nope'; choose one of: .*agss"):
        create_method("nope", variant="tiny")
