"""Downloads against local servers: a fake Hugging Face hub (the real ``hf_hub_download`` client
code runs against it through ``HF_ENDPOINT``) plus a CDN it redirects to, and plain URLs.

The hub answers ``HEAD/GET /{repo}/resolve/{revision}/{filename}`` like huggingface.co does for
an LFS file: ``302`` to the CDN with ``X-Repo-Commit``, ``X-Linked-Etag``, ``X-Linked-Size`` and
``Location``; unknown repos/revisions/files get ``404`` with ``X-Error-Code``.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from vostool.errors import WeightsError
from vostool.weights import import_weights, load_state_dict, pull, resolve_weights, save_state_dict, verify
from vostool.weights.manifest import Manifest, Source, Target, WeightsEntry

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
REPO = "vostool-test/tiny"


@dataclass
class ServerState:
    """What the servers serve and how they misbehave; requests are logged."""

    files: dict[str, bytes] = field(default_factory=dict)  # "/path" -> bytes (plain URL server / CDN)
    hub: dict[tuple[str, str, str], bytes] = field(default_factory=dict)  # (repo, revision, filename)
    mode: str = "ok"  # ok | truncate | error
    log: list[tuple[str, str, dict]] = field(default_factory=list)


def _handler(state: ServerState, cdn_base: list[str]):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, code: int, headers: dict[str, str], body: bytes = b"", *, cut: bool = False) -> None:
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            if cut:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "GET" and body:
                self.wfile.write(body[: len(body) // 2] if cut else body)
            if cut:
                self.close_connection = True

        def _serve(self) -> None:
            state.log.append((self.command, self.path, dict(self.headers)))
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) >= 5 and parts[2] == "resolve":  # hub: /{org}/{name}/resolve/{rev}/{file}
                repo, rev, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                if state.mode == "error":
                    return self._send(500, {}, b"internal error")
                if not any(r == repo for r, _, _ in state.hub):
                    return self._send(404, {"X-Error-Code": "RepoNotFound"})
                if not any(r == repo and v == rev for r, v, _ in state.hub):
                    return self._send(404, {"X-Error-Code": "RevisionNotFound"})
                data = state.hub.get((repo, rev, filename))
                if data is None:
                    return self._send(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": rev})
                sha = hashlib.sha256(data).hexdigest()
                state.files[f"/blobs/{sha}"] = data
                return self._send(
                    302,
                    {
                        "Location": f"{cdn_base[0]}/blobs/{sha}",
                        "X-Repo-Commit": rev,
                        "X-Linked-Etag": f'"{sha}"',
                        "X-Linked-Size": str(len(data)),
                        "ETag": '"weak-git-etag"',
                    },
                )
            data = state.files.get(self.path)
            if data is None:
                return self._send(404, {}, b"not found")
            if state.mode == "error":
                return self._send(503, {}, b"unavailable")
            self._send(200, {"Content-Length": str(len(data)), "ETag": '"x"'}, data, cut=state.mode == "truncate")

        do_GET = _serve
        do_HEAD = _serve

    return Handler


@pytest.fixture
def servers(tmp_path, monkeypatch):
    """(state, hub_url, cdn_url) with HF_ENDPOINT, the HF cache and the vostool cache in tmp_path."""
    state = ServerState()
    cdn_base: list[str] = []
    hub = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, cdn_base))
    cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, cdn_base))  # another origin, like a CDN
    cdn_base.append(f"http://127.0.0.1:{cdn.server_port}")
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True) for s in (hub, cdn)]
    for t in threads:
        t.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.server_port}")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path / "vostool"))
    for var in ("HF_HUB_OFFLINE", "VOSTOOL_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    # huggingface_hub sleeps between retries of 5xx / broken transfers; the tests need no waiting.
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda s: None)
    yield state, f"http://127.0.0.1:{hub.server_port}", cdn_base[0]
    for s in (hub, cdn):
        s.shutdown()
        s.server_close()


def _weights_bytes(tmp_path: Path, seed: int) -> bytes:
    g = torch.Generator().manual_seed(seed)
    p = tmp_path / f"w{seed}.safetensors"
    save_state_dict(p, {"conv.weight": torch.randn(8, 3, 3, 3, generator=g), "conv.bias": torch.randn(8, generator=g)})
    return p.read_bytes()


def _manifest(entry: WeightsEntry) -> Manifest:
    return Manifest(path="<test>", entries={entry.name: entry}, targets={"tiny": Target("tiny", "method", default=entry.name)})


def _entry(data: bytes, source: Source, **kw) -> WeightsEntry:
    return WeightsEntry(
        name="tiny.test",
        target="tiny",
        description="test",
        trained_on="nothing",
        licence="CC0",
        num_params=224,
        format="safetensors",
        layout="vostool",
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        **kw,
    )


def _hf_cached(tmp_path: Path) -> list[Path]:
    """Files (blobs, snapshot links, partial downloads) in the Hugging Face cache's repo folder."""
    return [p for p in (tmp_path / "hf").glob("models--*/*/**/*") if p.is_file() or p.is_symlink()]


def _hub_entry(data: bytes) -> WeightsEntry:
    return _entry(data, Source(kind="hf", repo=REPO, filename="tiny.safetensors", revision=COMMIT))


# ------------------------------------------------------------------------------------------------
# Hugging Face hub sources
# ------------------------------------------------------------------------------------------------


def test_hub_download_verified_then_cache_hit_without_network(servers, tmp_path):
    state, _, _ = servers
    data = _weights_bytes(tmp_path, 0)
    state.hub[(REPO, COMMIT, "tiny.safetensors")] = data
    state.hub[(REPO, "main", "tiny.safetensors")] = _weights_bytes(tmp_path, 1)  # a newer file on the branch
    m = _manifest(_hub_entry(data))

    r = resolve_weights("tiny", manifest=m)  # with the rich progress bar (on stderr)
    assert r.resolved_by == "download" and r.pinned and r.sha256 == hashlib.sha256(data).hexdigest()
    assert r.path.read_bytes() == data
    assert str(r.path).startswith(str(tmp_path / "hf"))  # the standard Hugging Face cache layout
    assert "models--vostool-test--tiny" in str(r.path) and f"snapshots/{COMMIT}" in str(r.path)
    heads = [(meth, path, hdr) for meth, path, hdr in state.log if "/resolve/" in path]
    assert heads and all(f"/resolve/{COMMIT}/" in p for _, p, _ in heads)  # the pinned revision, never "main"
    assert any("vostool" in h.get("user-agent", h.get("User-Agent", "")) for _, _, h in heads)  # library_name
    assert set(load_state_dict(r.path)) == {"conv.weight", "conv.bias"}

    n = len(state.log)
    again = resolve_weights("tiny", manifest=m, progress=False)
    assert again.resolved_by == "cache" and again.path == r.path and len(state.log) == n  # no request at all
    assert [c.ok for c in verify(manifest=m)] == [True]


def test_hub_wrong_sha256_is_rejected_and_evicted(servers, tmp_path):
    state, _, _ = servers
    state.hub[(REPO, COMMIT, "tiny.safetensors")] = _weights_bytes(tmp_path, 1)
    m = _manifest(_hub_entry(_weights_bytes(tmp_path, 0)))
    with pytest.raises(WeightsError, match="has sha256 .* but weights.toml pins .* discarded"):
        pull("tiny.test", manifest=m, progress=False)
    assert _hf_cached(tmp_path) == []  # nothing cached
    with pytest.raises(WeightsError, match="offline"):
        resolve_weights("tiny", manifest=m, offline=True)


def test_hub_truncated_transfer_is_rejected(servers, tmp_path):
    state, _, _ = servers
    data = _weights_bytes(tmp_path, 0)
    state.hub[(REPO, COMMIT, "tiny.safetensors")] = data
    state.mode = "truncate"
    m = _manifest(_hub_entry(data))
    with pytest.raises(WeightsError, match="tiny.test"):
        pull("tiny.test", manifest=m, progress=False)
    assert _hf_cached(tmp_path) == []
    state.mode = "ok"  # the next pull succeeds
    assert pull("tiny.test", manifest=m, progress=False).path.read_bytes() == data


def test_hub_server_error_gives_clear_message(servers, tmp_path):
    state, _, _ = servers
    state.mode = "error"
    m = _manifest(_hub_entry(_weights_bytes(tmp_path, 0)))
    with pytest.raises(WeightsError) as err:
        pull("tiny.test", manifest=m, progress=False)
    msg = str(err.value)
    assert "HTTP 500" in msg and "vostool weights import tiny.test FILE" in msg and "\n" not in msg


def test_hub_unknown_revision_is_reported(servers, tmp_path):
    state, _, _ = servers
    data = _weights_bytes(tmp_path, 0)
    state.hub[(REPO, OTHER_COMMIT, "tiny.safetensors")] = data  # the pinned commit is gone from the hub
    m = _manifest(_hub_entry(data))
    with pytest.raises(WeightsError, match=f"at revision {COMMIT[:12]}.*RevisionNotFound"):
        pull("tiny.test", manifest=m, progress=False)


def test_hub_offline_uses_cache_or_says_how_to_get_weights(servers, tmp_path, monkeypatch):
    state, _, _ = servers
    data = _weights_bytes(tmp_path, 0)
    state.hub[(REPO, COMMIT, "tiny.safetensors")] = data
    m = _manifest(_hub_entry(data))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="offline mode is on.*vostool weights import tiny.test FILE"):
        resolve_weights("tiny", manifest=m)
    assert state.log == []  # offline never opened a connection
    monkeypatch.delenv("HF_HUB_OFFLINE")
    pull("tiny.test", manifest=m, progress=False)
    n = len(state.log)
    r = resolve_weights("tiny", manifest=m, offline=True)
    assert r.resolved_by == "cache" and r.path.read_bytes() == data and len(state.log) == n


# ------------------------------------------------------------------------------------------------
# Plain URL sources
# ------------------------------------------------------------------------------------------------


def test_url_download_verified_cached_and_reused(servers, tmp_path):
    state, _, cdn = servers
    data = _weights_bytes(tmp_path, 2)
    state.files["/w/tiny.safetensors"] = data
    m = _manifest(_entry(data, Source(kind="url", url=f"{cdn}/w/tiny.safetensors")))
    r = resolve_weights("tiny", manifest=m, progress=False)
    assert r.resolved_by == "download" and r.path.read_bytes() == data
    assert r.path.parent == tmp_path / "vostool" / "weights" / "tiny.test"
    assert not list((tmp_path / "vostool" / "downloads").iterdir())  # no partial file left
    n = len(state.log)
    assert resolve_weights("tiny", manifest=m).resolved_by == "cache" and len(state.log) == n


def test_url_zip_member_is_extracted_and_verified(servers, tmp_path):
    state, _, cdn = servers
    data = _weights_bytes(tmp_path, 3)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("models/other.pth", b"x" * 1000)
        zf.writestr("models/tiny.safetensors", data)
    state.files["/models.zip"] = buf.getvalue()
    m = _manifest(_entry(data, Source(kind="url", url=f"{cdn}/models.zip", member="models/tiny.safetensors")))
    r = pull("tiny.test", manifest=m, progress=False)
    assert r.path.read_bytes() == data
    shutil.rmtree(r.path.parent)
    m2 = _manifest(_entry(data, Source(kind="url", url=f"{cdn}/models.zip", member="models/missing.pth")))
    with pytest.raises(WeightsError, match="has no models/missing.pth"):
        pull("tiny.test", manifest=m2, progress=False)
    assert not list((tmp_path / "vostool" / "downloads").iterdir())


def test_url_wrong_sha256_never_replaces_a_good_file(servers, tmp_path):
    state, _, cdn = servers
    good = _weights_bytes(tmp_path, 4)
    state.files["/w.safetensors"] = good
    m = _manifest(_entry(good, Source(kind="url", url=f"{cdn}/w.safetensors")))
    first = pull("tiny.test", manifest=m, progress=False)
    # The cached file gets corrupted, and the server now serves other bytes of the same size.
    first.path.write_bytes(b"\0" * len(good))
    other = bytearray(good)
    other[-1] ^= 0xFF
    state.files["/w.safetensors"] = bytes(other)
    with pytest.raises(WeightsError, match="pins .* discarded"):
        pull("tiny.test", manifest=m, progress=False)
    assert not list((tmp_path / "vostool" / "downloads").iterdir())
    assert [c.ok for c in verify(manifest=m)] == [False]
    state.files["/w.safetensors"] = good
    assert pull("tiny.test", manifest=m, progress=False).path.read_bytes() == good


def test_url_truncated_and_server_error(servers, tmp_path):
    state, _, cdn = servers
    data = _weights_bytes(tmp_path, 5)
    state.files["/w.safetensors"] = data
    m = _manifest(_entry(data, Source(kind="url", url=f"{cdn}/w.safetensors")))
    state.mode = "truncate"
    with pytest.raises(WeightsError, match=r"cut short|broke off"):
        pull("tiny.test", manifest=m, progress=False)
    state.mode = "error"
    with pytest.raises(WeightsError, match="HTTP 503"):
        pull("tiny.test", manifest=m, progress=False)
    assert not list((tmp_path / "vostool" / "downloads").iterdir())
    assert not (tmp_path / "vostool" / "weights" / "tiny.test").exists() or not any(
        p.suffix == ".safetensors" for p in (tmp_path / "vostool" / "weights" / "tiny.test").iterdir()
    )


def test_url_offline_and_unreachable(servers, tmp_path):
    state, _, cdn = servers
    data = _weights_bytes(tmp_path, 6)
    m = _manifest(_entry(data, Source(kind="url", url=f"{cdn}/w.safetensors")))
    with pytest.raises(WeightsError, match="offline mode is on"):
        resolve_weights("tiny", manifest=m, offline=True)
    assert state.log == []
    dead = _manifest(_entry(data, Source(kind="url", url="http://127.0.0.1:9/w.safetensors")))
    with pytest.raises(WeightsError, match="cannot reach 127.0.0.1:9"):
        pull("tiny.test", manifest=dead, progress=False)
    # Offline machines: import a copy instead, then everything resolves from the cache.
    f = tmp_path / "copy.safetensors"
    f.write_bytes(data)
    rec = import_weights("tiny.test", f, manifest=m)
    assert rec.pinned and rec.sha256 == hashlib.sha256(data).hexdigest()
    r = resolve_weights("tiny", manifest=m, offline=True)
    assert r.resolved_by == "cache" and r.origin == f"import {f.resolve()}"


def test_path_source_is_verified_and_copied(servers, tmp_path):
    data = _weights_bytes(tmp_path, 9)
    shared = tmp_path / "share" / "tiny.safetensors"
    shared.parent.mkdir()
    shared.write_bytes(data)
    m = _manifest(_entry(data, Source(kind="path", path=str(shared))))
    r = resolve_weights("tiny", manifest=m)
    assert r.resolved_by == "download" and r.path != shared and r.path.read_bytes() == data
    shutil.rmtree(r.path.parent)
    shared.write_bytes(_weights_bytes(tmp_path, 10))
    with pytest.raises(WeightsError, match="is pinned to"):
        resolve_weights("tiny", manifest=m)


def test_resolution_order_explicit_file_beats_cache(servers, tmp_path):
    state, _, cdn = servers
    data = _weights_bytes(tmp_path, 7)
    state.files["/w.safetensors"] = data
    m = _manifest(_entry(data, Source(kind="url", url=f"{cdn}/w.safetensors")))
    pull("tiny.test", manifest=m, progress=False)
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(_weights_bytes(tmp_path, 8))
    r = resolve_weights("tiny", str(mine), manifest=m)
    assert (r.resolved_by, r.name, r.path, r.pinned) == ("--weights", "file", mine.resolve(), False)
    same = tmp_path / "same.safetensors"
    same.write_bytes(data)
    assert resolve_weights("tiny", str(same), manifest=m).name == "tiny.test"  # a pinned file is recognised
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights("tiny", str(tmp_path / "nope.pth"), manifest=m)
