"""`vostool weights list / pull / verify / import` through the real CLI entry point (no network)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from vostool.cli import main
from vostool.weights import save_state_dict

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run `vostool ARGS`; returns (exit status, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A vostool cache in tmp_path, offline, and a manifest with one small pinned hub entry."""
    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    weights = tmp_path / "tiny.safetensors"
    save_state_dict(weights, {"w": torch.arange(12.0).view(3, 4)})
    data = weights.read_bytes()
    manifest = tmp_path / "weights.toml"
    manifest.write_text(
        f"""
[targets.tiny]
kind = "method"
default = "tiny.demo"

[targets.other]
kind = "method"
how = "No weights were published. Train them with `vostool train other`."

[weights."tiny.demo"]
target = "tiny"
description = "a test entry"
trained_on = "nothing"
licence = "CC0"
num_params = 12
format = "safetensors"
layout = "vostool"
sha256 = "{hashlib.sha256(data).hexdigest()}"
size = {len(data)}
metrics = {{}}
source = {{ kind = "hf", repo = "vostool-test/tiny", filename = "tiny.safetensors", revision = "{COMMIT}" }}
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("VOSTOOL_WEIGHTS_MANIFEST", str(manifest))
    return tmp_path, weights


def test_list_json_shows_entries_cache_state_and_how_to_get_weights(env, capsys):
    code, out, _ = run(capsys, "weights", "list", "--json")
    assert code == 0
    data = json.loads(out)
    (entry,) = data["entries"]
    assert entry["name"] == "tiny.demo" and entry["default"] and entry["cached"] is None
    assert entry["source"].startswith("hf://vostool-test/tiny/tiny.safetensors@")
    assert data["targets"]["other"]["default"] is None and "vostool train other" in data["targets"]["other"]["how"]
    code, out, _ = run(capsys, "weights", "list")
    assert code == 0 and "tiny.demo" in out and "no published weights" in out


def test_offline_pull_fails_with_one_line_then_import_verify(env, capsys):
    tmp_path, weights = env
    code, out, err = run(capsys, "weights", "pull", "tiny.demo")
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and "offline mode is on" in err and "vostool weights import tiny.demo FILE" in err

    code, out, err = run(capsys, "weights", "import", "tiny.demo", str(weights))
    assert code == 0, err
    name, how, sha, path = out.strip().split("\t")
    assert (name, how) == ("tiny.demo", "imported") and sha == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert path.startswith(str(tmp_path / "cache" / "weights" / "tiny.demo"))
    assert "sha256 matches weights.toml" in err

    code, out, _ = run(capsys, "weights", "pull", "tiny.demo")  # cached now: works offline
    assert code == 0 and out.split("\t")[1] == "cache"
    code, out, _ = run(capsys, "weights", "list", "--json")
    assert json.loads(out)["entries"][0]["cached"] == path
    code, out, _ = run(capsys, "weights", "verify")
    assert code == 0 and out.startswith("OK")

    # A corrupted cache file is caught by verify (exit 3) and no longer resolves.
    with open(path, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    code, out, err = run(capsys, "weights", "verify")
    assert code == 3 and out.startswith("FAIL") and "failed verification: tiny.demo" in err
    code, _, err = run(capsys, "weights", "pull", "tiny.demo")
    assert code == 3 and "offline mode is on" in err


def test_import_rejects_a_different_file(env, capsys):
    tmp_path, _ = env
    other = tmp_path / "other.safetensors"
    save_state_dict(other, {"w": torch.zeros(3, 4)})
    code, out, err = run(capsys, "weights", "import", "tiny.demo", str(other))
    assert code == 3 and out == "" and "is pinned to" in err and err.count("\n") == 1
    assert not (tmp_path / "cache" / "weights" / "tiny.demo").exists() or not any((tmp_path / "cache" / "weights" / "tiny.demo").iterdir())
    code, _, err = run(capsys, "weights", "import", "nope.x", str(other))
    assert code == 3 and "no weights called 'nope.x'" in err


@pytest.mark.shared
def test_import_real_raft_small_makes_flow_weights_resolve_offline(shared_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VOSTOOL_WEIGHTS_MANIFEST", raising=False)
    code, out, err = run(capsys, "weights", "import", "raft-small.things", str(shared_dir / "weights" / "raft-small.pth"))
    assert code == 0, err
    assert "converted from raft-original" in err
    from vostool.weights import resolve_weights

    r = resolve_weights("raft-small.things", offline=True)  # the target's default is the fp16 copy shipped in the package
    assert r.name == "raft-small.things" and r.resolved_by == "cache" and r.pinned
    assert r.describe()["sha256"] == out.split("\t")[2]
    code, out, _ = run(capsys, "weights", "verify", "raft-small.things")
    assert code == 0 and out.startswith("OK")
