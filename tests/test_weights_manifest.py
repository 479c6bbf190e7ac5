"""weights.toml: schema of every entry, the shipped copies, and parameter counts against the networks."""

from __future__ import annotations

import copy
import re
import sys

import pytest

from vostool.errors import WeightsError
from vostool.weights import build_network, load_manifest
from vostool.weights.manifest import packaged_manifest_path, validate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.fixture(scope="module")
def raw() -> dict:
    return tomllib.loads(packaged_manifest_path().read_text(encoding="utf-8"))


def test_root_copy_is_identical_to_packaged(repo_dir):
    """`pip install .` ships vostool/weights/weights.toml; the root copy must not drift from it."""
    assert (repo_dir / "weights.toml").read_bytes() == packaged_manifest_path().read_bytes()


def test_user_facing_text_names_no_development_paths_and_right_commands():
    """Issue 14 item 13: `weights list` and the no-weights errors show what users can run: no
    ``../shared`` path, and ``vostool train --method NAME`` (``vostool train NAME`` is no command)."""
    text = packaged_manifest_path().read_text(encoding="utf-8")
    assert "../shared" not in text and "shared/data" not in text
    commands = re.findall(r"`(vostool train[^`]*)`", text)
    assert commands and all(c == "vostool train" or c.startswith("vostool train --") for c in commands), commands


def test_manifest_is_valid_and_parses(raw):
    assert validate(raw) == []
    m = load_manifest()
    assert "raft-small.things" in m.entries
    assert m.targets["raft-small"].default == "raft-small.things-fp16"


def test_every_entry_has_full_schema(raw):
    required = {"target", "description", "trained_on", "licence", "num_params", "format", "layout", "metrics", "source"}
    for name, e in raw["weights"].items():
        assert re.fullmatch(r"[a-z0-9-]+\.[a-z0-9.-]+", name), name
        assert required <= set(e), (name, required - set(e))
        assert name.split(".")[0] == e["target"]
        src = e["source"]
        if src["kind"] == "manual":
            # Published but not fetchable/pinnable: must say where and why, and carry no fake hash.
            assert src["url"].startswith("https://") and src["note"] and "sha256" not in e
        else:
            assert re.fullmatch(r"[0-9a-f]{64}", e["sha256"]), name
            assert e["size"] > 0
        if src["kind"] == "hf":
            assert re.fullmatch(r"[0-9a-f]{40}", src["revision"]), f"{name}: hub revision must be a pinned commit"
        if e["metrics"]:
            assert e["metrics_source"]


def test_every_method_target_says_how_to_get_weights(raw):
    for name, t in raw["targets"].items():
        assert t.get("default") or "train" in t["how"], name
    # The three paper-only methods have no published weights and must not pretend otherwise: what
    # exists for them is what vostool trained and ships in the package.
    for name in ("savos", "ovsnet", "embedding"):
        entries = {k: e for k, e in raw["weights"].items() if e["target"] == name}
        assert all(e["source"]["kind"] == "package" and "trained by vostool" in e["description"] for e in entries.values()), name
        assert raw["targets"][name].get("default") in (None, *entries), name


def test_raft_small_entry_facts(raw):
    e = raw["weights"]["raft-small.things"]
    assert e["sha256"] == "c7d41b9cc88442bb8aa911dbb33086dac55a226394b142937ff22d5578717332"
    assert e["size"] == 3984814 and e["num_params"] == 990162
    assert e["layout"] == "raft-original" and e["licence"].startswith("BSD-3-Clause")


def test_validate_rejects_broken_entries(raw):
    bad = copy.deepcopy(raw)
    e = bad["weights"]["raft-small.things"]
    e["sha256"] = "ad48884c"  # a torchvision-style prefix is not a pin
    e["source"] = {"kind": "hf", "repo": "org/repo", "filename": "x.safetensors", "revision": "main"}
    del e["licence"]
    problems = "\n".join(validate(bad))
    assert "sha256 must be 64" in problems
    assert "pinned 40-hex commit" in problems
    assert "missing licence" in problems
    bad2 = copy.deepcopy(raw)
    bad2["weights"]["raft-small.things"]["source"] = {"kind": "url", "url": "http://example.com/x.pth"}
    bad2["targets"]["resnet18"]["how"] = ""
    problems = "\n".join(validate(bad2))
    assert "must be https" in problems and "targets.resnet18" in problems


def test_load_manifest_reports_invalid_file(tmp_path):
    p = tmp_path / "weights.toml"
    p.write_text('[targets.x]\nkind = "flow"\n', encoding="utf-8")
    with pytest.raises(WeightsError, match="targets.x"):
        load_manifest(p)
    p.write_text("not = [toml", encoding="utf-8")
    with pytest.raises(WeightsError, match="not valid TOML"):
        load_manifest(p)


@pytest.mark.parametrize("name", sorted(load_manifest().entries))
def test_declared_parameter_count_matches_network(name):
    """For every entry whose network vostool can build, num_params equals the network's."""
    entry = load_manifest().entries[name]
    net = build_network(entry.target, entry.arch)
    if net is None:
        pytest.skip(f"no vostool network for target {entry.target!r}")
    assert sum(p.numel() for p in net.parameters()) == entry.num_params


def test_train_hints_are_commands_the_cli_takes() -> None:
    """weights.toml tells users how to train what is not published: `vostool train --method NAME`
    with a NAME that has a training recipe."""
    from vostool.train.recipes import RECIPES

    hints = [h.split() for t in load_manifest().targets.values() for h in re.findall(r"`vostool train([^`]*)`", t.how)]
    assert len(hints) >= 3
    assert [h for h in hints if h and (h[0] != "--method" or h[1] not in RECIPES)] == []
