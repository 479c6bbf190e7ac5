"""A network's heavy blocks: which are chosen, that ONNX Runtime gives torch's results and a
session torch's masks (skipped without the ``ort`` extra), that --compile compiles them, and
that CUDA graphs replay eager results and masks (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from synthetic_videos import moving_objects
from vostool import create_session
from vostool.inference import blocks
from vostool.inference.timing import StageTimer
from vostool.models.base import no_stage

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
needs_ort = pytest.mark.skipif(not blocks.available(), reason="onnxruntime and onnx are not installed (the ort extra)")


class Toy(nn.Module):
    """``body`` is called whole from ``run``; ``head``'s child ``conv`` is also called on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
        self.head = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())

    def run(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.head(y) + self.head[0](y)


@needs_ort
def test_blocks_called_whole_move_to_onnx_runtime_and_give_torch_results(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path))
    torch.manual_seed(0)
    net = Toy().eval()
    x = torch.rand(2, 3, 48, 64)
    with torch.inference_mode():
        expected = net.run(x)
        acc = blocks.Accelerator(net, threads=1)
        with acc.watch():
            net.run(x)
        # head's conv is called outside head's forward: head cannot go whole, its conv can
        assert acc.blocks == ["body", "head.0"] and isinstance(net.body, blocks.OrtBlock)
        for _ in range(2):
            torch.testing.assert_close(net.run(x), expected, atol=1e-4, rtol=1e-4)
        assert net.body.exported_shapes == 1 and len(list((tmp_path / "onnx").glob("*.onnx"))) == 2
        torch.testing.assert_close(net.run(x[:1]), expected[:1], atol=1e-4, rtol=1e-4)  # a new shape: exported once more
        assert net.body.exported_shapes == 2


class ToyEntry(Toy):
    """``run`` is an entry point: all of a frame's network work, tensors in and out."""

    entry_points = ("run",)

    def run(self, x: torch.Tensor, *, stage=no_stage) -> torch.Tensor:
        with stage("body"):
            y = self.body(x)
        with stage("head"):
            return self.head(y) + self.head[0](y)


@needs_ort
def test_an_entry_point_runs_as_one_onnx_runtime_graph_timed_as_network(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path))
    torch.manual_seed(0)
    net = ToyEntry().eval()
    keys = list(net.state_dict())
    x = torch.rand(2, 3, 48, 64)
    timer = StageTimer()
    with torch.inference_mode():
        expected = net.run(x)
        acc = blocks.Accelerator(net, threads=1)
        with acc.watch():
            net.run(x, stage=timer.stage)
        assert acc.blocks == ["run()"] and isinstance(net.run, blocks.OrtEntry)
        assert not any(isinstance(m, blocks.OrtBlock) for m in net.modules()) and list(net.state_dict()) == keys
        for frame in range(1, 4):  # the first call after the watch runs torch and exports, then ONNX Runtime
            timer.frame = frame
            torch.testing.assert_close(net.run(x, stage=timer.stage), expected, atol=1e-4, rtol=1e-4)
        assert set(timer.records[1]) == {"body", "head"} and set(timer.records[3]) == {"network"}
        assert net.run.block.exported_shapes == 1 and len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
        torch.testing.assert_close(net.run(x[:1]), expected[:1], atol=1e-4, rtol=1e-4)  # a new shape: exported once more
        assert net.run.block.exported_shapes == 2 and not net.training  # exporting left the network in eval mode
        # a second accelerator on the same network (another session) keeps the entry as it is
        again = blocks.Accelerator(net, threads=1)
        with again.watch():
            net.run(x)
        assert again.blocks == ["run()"] and not any(isinstance(m, blocks.OrtBlock) for m in net.modules())


@needs_ort
@pytest.mark.parametrize("method,kwargs,shapes", [("agss", {}, 2), ("savos", {"scales": (0.5, 1.0)}, 4)])
def test_a_session_on_onnx_runtime_gives_the_masks_of_torch(tmp_path, monkeypatch, method: str, kwargs: dict, shapes: int) -> None:
    """The frame runs as one graph, exported again when an object is added (agss: a second
    reference group) and per test scale (savos), with torch's masks."""
    monkeypatch.setenv("VOSTOOL_CACHE", str(tmp_path))
    frames, masks = moving_objects(8, 96, 128, objects=3)
    first = np.where(masks[0] == 3, 0, masks[0]).astype(np.uint8)  # object 3 is given on frame 4
    runs = {}
    for runtime in ("torch", "onnxruntime"):
        torch.manual_seed(0)
        s = create_session(method, method_kwargs={"variant": "tiny", **kwargs}, weights="random", device="cpu", runtime=runtime)
        runs[runtime] = [r for r in s.propagate(frames, {0: first, 4: masks[4]})]
        assert s.describe()["runtime"] == ("onnxruntime (frame() as one graph), torch" if runtime == "onnxruntime" else "torch")
    assert s.method.net.frame.block.exported_shapes == shapes
    for a, b in zip(runs["torch"], runs["onnxruntime"]):
        assert (a.ids != b.ids).mean() < 1e-3
        np.testing.assert_allclose(a.prob.numpy(), b.prob.numpy(), atol=1e-3)


def test_compile_backend_compiles_the_same_blocks_in_place() -> None:
    torch.manual_seed(0)
    net = Toy().eval()
    x = torch.rand(1, 3, 64, 64)
    acc = blocks.Accelerator(net, "compile")
    with torch.inference_mode(), acc.watch():
        net.run(x)
    assert acc.blocks == ["body", "head.0"] and net.body._compiled_call_impl is not None


def test_each_backend_takes_the_tensors_it_can_run() -> None:
    cpu, half = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8, dtype=torch.bfloat16)
    assert blocks._signature((cpu,)) == ((1, 3, 8, 8),)
    assert blocks._signature((half,)) is None and blocks._signature((cpu, 3)) is None  # ONNX export: float32 tensors only
    assert blocks._signature((half,), "compile") == ((1, 3, 8, 8),)
    assert blocks._signature((cpu,), "cuda-graphs") is None  # graphs capture CUDA work only


def test_cuda_graphs_on_the_cpu_is_a_one_line_input_error() -> None:
    from vostool.errors import InputError

    with pytest.raises(InputError, match="needs a CUDA device"):
        create_session("agss", method_kwargs={"variant": "tiny"}, weights="random", device="cpu", runtime="cuda-graphs")


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graph_blocks_replay_eager_results_and_return_copies(precision: str) -> None:
    torch.manual_seed(0)
    net = Toy().cuda().eval()
    x = torch.rand(2, 3, 48, 64, device="cuda")
    cast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16")
    inputs = [x * (i + 1) / 3 for i in range(3)]
    with torch.inference_mode():
        with cast:
            expected = [net.run(xi) for xi in inputs]
        acc = blocks.Accelerator(net, "cuda-graphs")
        with acc.watch(), cast:
            net.run(x)
        assert acc.blocks == ["body", "head.0"] and isinstance(net.body, blocks.GraphBlock)
        with cast:
            outs = [net.run(xi) for xi in inputs]  # the first call captures, the others replay
        assert net.body.captured_shapes == 1
    for got, want in zip(outs, expected):  # each output kept its values through later replays
        torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)


@needs_cuda
def test_a_session_on_cuda_graphs_gives_the_masks_of_eager_torch() -> None:
    frames, masks = moving_objects(8, 96, 128, objects=2)
    runs = {}
    for runtime in ("torch", "cuda-graphs"):
        torch.manual_seed(0)
        s = create_session("agss", method_kwargs={"variant": "tiny"}, weights="random", device="cuda", runtime=runtime)
        runs[runtime] = [r.ids for r in s.propagate(frames, {0: masks[0]})]
        assert s.describe()["runtime"].startswith("cuda-graphs (") == (runtime == "cuda-graphs")
    for a, b in zip(runs["torch"], runs["cuda-graphs"]):
        assert (a != b).mean() < 1e-3
