"""Running the heavy blocks of a network faster: with ONNX Runtime on the CPU, or compiled by
``torch.compile`` (``--compile``); the torch network stays the one source of truth.

A method's per-frame rule calls its network with Python between the calls, so neither a whole
method nor the network's ``forward`` (the training entry point) can be exported as such.
:class:`Accelerator` watches one real frame (``predict`` and ``update``) and picks what to move:

* a network that names *entry points* (:mod:`vostool.models.base`; AGSS-VOS's and SAVOS's
  ``frame``: all of a frame's network work) has each entry the frame called exported whole to
  ONNX Runtime (:class:`OrtEntry`, for now this backend only): one graph lets the runtime fuse
  across the modules and skips torch's glue between them (shipped AGSS-VOS at 448x256, 1
  object, 2 threads: 30 ms per frame as one graph, ~50 ms as separate blocks). A shape whose
  export fails runs the entry in torch.
* otherwise, and for the other backends, the *blocks*: the submodules that carry the
  multiply-accumulates (or the time) and are only ever called as a whole (a module none of
  whose submodules is called from outside it). Then, per backend:

* ``onnxruntime``: each block is exported for the exact input shapes it was called with,
  checked against torch on those inputs, and replaced by an :class:`OrtBlock`; a call with other
  shapes (objects added) exports once more, any failure keeps that block in torch.
* ``compile``: each block is compiled in place (``nn.Module.compile``, static shapes).
* ``cuda-graphs`` (CUDA): each block is captured as a CUDA graph per input shape
  (:class:`GraphBlock`): one replay launches all of a block's kernels, where eager PyTorch pays
  the CPU cost of every kernel launch. On an H200 eager networks at 480p are bound by launches
  (shipped AGSS-VOS: ~10 ms of CPU per frame for a few GMAC), not by the GPU; with graphs the
  methods ran 1.1-2.9x faster there (``benchmarks/gpu_check.py``, README "Speed").

On the CPU, ONNX Runtime runs convolutional blocks 1.4-2.4x faster than eager PyTorch: it
folds BatchNorm into the convolutions, fuses the activations and keeps its own blocked layout
(measured, one thread: shipped AGSS-VOS at 448x256 72 ms vs 104 ms; MobileNetV2 features 21 ms
vs 51 ms).

Exported files are cached under ``$VOSTOOL_CACHE/onnx`` (``~/.cache/vostool/onnx``), named
by a hash of the module's class, weights, input shapes and the torch / ONNX Runtime versions,
so only the first run of a network pays the export (a second or two per block).

ONNX Runtime needs the ``ort`` extra (``onnxruntime`` and ``onnx``); without it torch runs
everything. Compiled blocks run without torch.compile's own CUDA graphs ("reduce-overhead"):
their outputs may be kept in a method's per-video state (AGSS-VOS's reference features), which
the next replay would overwrite; :class:`GraphBlock` returns copies of its graph's outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..io.atomic import write_bytes_atomic
from ..models.base import no_stage

log = logging.getLogger(__name__)

MIN_SHARE = 0.01
"""Blocks with less than this share of a frame's multiply-accumulates stay in torch (a call into
ONNX Runtime costs tens of microseconds), unless they take :data:`MIN_TIME_SHARE` of its time."""
MIN_TIME_SHARE = 0.05
"""Time counts too: torch's CPU max pooling, with no multiply-accumulates, took 9 % of a shipped
AGSS-VOS frame."""
MAX_SHAPES = 8
"""Input shapes exported per block; calls with further shapes run in torch."""


def available() -> bool:
    """Whether ONNX Runtime and the ONNX exporter's package are installed."""
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def cache_dir() -> Path:
    return Path(os.environ.get("VOSTOOL_CACHE") or Path.home() / ".cache" / "vostool") / "onnx"


def _signature(args: tuple[Any, ...], backend: str = "onnxruntime") -> tuple[Any, ...] | None:
    """The input shapes of a block's call, or None when ``backend`` cannot take it: ONNX Runtime
    takes float32 CPU tensors, CUDA graphs CUDA tensors, compile any tensors."""
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        return None
    if backend == "onnxruntime" and not all(a.dtype == torch.float32 and a.device.type == "cpu" for a in args):
        return None
    if backend == "cuda-graphs" and not all(a.is_cuda for a in args):
        return None
    return tuple(tuple(a.shape) for a in args)


def _flat_outputs(out: Any) -> list[torch.Tensor] | None:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, tuple) and out and all(isinstance(o, torch.Tensor) for o in out):
        return list(out)
    return None


def _feeds(args: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """ONNX Runtime's inputs ``x0, x1, ...`` for a block's tensor arguments."""
    return {f"x{i}": a.detach().contiguous().numpy() for i, a in enumerate(args)}


def _close(got: list[torch.Tensor], expected: list[torch.Tensor], rtol: float) -> bool:
    """Same count and shapes, and every element within ``rtol`` of the largest magnitude (at least 1)."""
    if len(got) != len(expected):
        return False
    for g, e in zip(got, expected):
        if tuple(g.shape) != tuple(e.shape):
            return False
        e = e.detach().float()
        scale = max(1.0, float(e.abs().max())) if e.numel() else 1.0
        if e.numel() and float((g.detach().float().to(e.device) - e).abs().max()) > rtol * scale:
            return False
    return True


class _Exporter:
    """Exports modules to ONNX (cached on disk), opens ONNX Runtime sessions and checks them."""

    def __init__(self, threads: int) -> None:
        import onnxruntime as ort

        self.ort = ort
        self.options = ort.SessionOptions()
        self.options.intra_op_num_threads = max(1, threads)
        self.options.inter_op_num_threads = 1
        self.options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # vostool's threads share the cores
        self.options.log_severity_level = 3
        self._weights: dict[int, str] = {}

    def _weights_hash(self, module: nn.Module) -> str:
        key = id(module)
        if key not in self._weights:
            h = hashlib.sha256(getattr(module, "cache_name", type(module).__qualname__).encode())
            for name, t in module.state_dict().items():
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
            self._weights[key] = h.hexdigest()
        return self._weights[key]

    def session(self, module: nn.Module, args: tuple[torch.Tensor, ...], expected: list[torch.Tensor]) -> Any:
        """An ONNX Runtime session computing ``module(*args)``, or None (export failed, or its
        output differs from ``expected``, torch's)."""
        import onnxruntime

        key = hashlib.sha256(
            repr((self._weights_hash(module), _signature(args), torch.__version__, onnxruntime.__version__)).encode()
        ).hexdigest()[:32]
        path = cache_dir() / f"{key}.onnx"
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                buf = io.BytesIO()
                names = [f"x{i}" for i in range(len(args))]
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    torch.onnx.export(module, args, buf, input_names=names, dynamo=False, opset_version=17)
                write_bytes_atomic(path, buf.getvalue())
            sess = self.ort.InferenceSession(str(path), self.options, providers=["CPUExecutionProvider"])
            got = sess.run(None, _feeds(args))
        except Exception as exc:  # an operator the exporter or the runtime lacks: this block stays in torch
            log.debug("ONNX export of %s failed: %s", type(module).__name__, exc)
            return None
        if not _close([torch.from_numpy(g) for g in got], expected, 1e-3):
            log.debug("ONNX Runtime output of %s differs from torch's; it stays in torch", type(module).__name__)
            return None
        return sess


class OrtBlock(nn.Module):
    """Stands in for ``module``: calls with an exported input shape run in ONNX Runtime, others
    export that shape first (at most :data:`MAX_SHAPES`), anything it cannot take runs in torch.
    The torch module stays inside (``torch_module``), with its parameters."""

    def __init__(self, module: nn.Module, exporter: _Exporter) -> None:
        super().__init__()
        self.torch_module = module
        self._exporter = exporter
        self._sessions: dict[tuple[Any, ...], Any] = {}

    def forward(self, *args: Any) -> Any:
        sess = None if torch.jit.is_tracing() else self.lookup(args)  # traced inside an entry's export: torch
        if sess is not None:
            return self.run(sess, args)
        out = self.torch_module(*args)
        self.export(args, out)
        return out

    def lookup(self, args: tuple[Any, ...]) -> Any:
        """The ONNX Runtime session for the shapes of ``args`` (exported and checked), or None."""
        sig = _signature(args)
        return None if sig is None else self._sessions.get(sig)

    def export(self, args: tuple[Any, ...], out: Any) -> None:
        """Export the module for the shapes of ``args`` (once; ``out``: torch's output on them,
        which ONNX Runtime's must match), unless :data:`MAX_SHAPES` are exported already."""
        sig = _signature(args)
        if sig is None or sig in self._sessions or len(self._sessions) >= MAX_SHAPES:
            return
        flat = _flat_outputs(out)
        self._sessions[sig] = self._exporter.session(self.torch_module, args, flat) if flat is not None else None

    def run(self, sess: Any, args: tuple[Any, ...]) -> Any:
        """The exported module on ``args`` (``sess``: their :meth:`lookup`)."""
        outs = [torch.from_numpy(o) for o in sess.run(None, _feeds(args))]
        return outs[0] if len(outs) == 1 else tuple(outs)

    @property
    def exported_shapes(self) -> int:
        return sum(s is not None for s in self._sessions.values())


class _Entry(nn.Module):
    """A network's entry point ``name`` as a module (what ONNX export traces); the network is
    its only child, so the cache key covers its weights."""

    def __init__(self, net: nn.Module, name: str) -> None:
        super().__init__()
        self.net = net
        self.name = name
        self.cache_name = f"{type(net).__qualname__}.{name}"
        self.training = net.training  # the exporter restores this mode on the network afterwards

    def forward(self, *args: torch.Tensor) -> Any:
        return getattr(type(self.net), self.name)(self.net, *args)


class OrtEntry:
    """Stands in for a network's entry point: a call whose shapes are exported runs as one ONNX
    Runtime graph, timed as the stage ``network``; others run the torch method (with its own
    stages) and export those shapes for the next call."""

    def __init__(self, net: nn.Module, name: str, exporter: _Exporter) -> None:
        self.method = getattr(net, name)
        self.block = OrtBlock(_Entry(net, name), exporter)

    def __call__(self, *args: torch.Tensor, **kwargs: Any) -> Any:
        sess = self.block.lookup(args)
        if sess is not None:
            with kwargs.get("stage", no_stage)("network"):
                return self.block.run(sess, args)
        out = self.method(*args, **kwargs)
        self.block.export(args, out)
        return out


class GraphBlock(nn.Module):
    """Stands in for ``module`` on CUDA: each input signature (shapes, dtypes, autocast, inference
    mode) is captured once as a CUDA graph, then replayed: inputs are copied into the graph's static
    tensors and the outputs returned as copies (a method may keep them across frames, and the
    next replay overwrites the static ones). The capture is checked against an eager call on
    the same inputs; a block that cannot be captured (a host sync, a data-dependent shape) or
    whose replay differs runs eagerly. Calls with gradients, on the CPU, or beyond
    :data:`MAX_SHAPES` signatures run eagerly.

    All graphs of one network share a memory pool: its blocks run one after another on one
    stream and every output is copied before the next replay, so no two graphs' live tensors
    overlap."""

    def __init__(self, module: nn.Module, pool: Any) -> None:
        super().__init__()
        self.torch_module = module
        self._pool = pool
        self._graphs: dict[tuple[Any, ...], Any] = {}

    def _key(self, args: tuple[torch.Tensor, ...]) -> tuple[Any, ...]:
        dev = args[0].device.type
        return (
            tuple((tuple(a.shape), a.dtype, a.device) for a in args),
            torch.is_autocast_enabled(dev),
            torch.get_autocast_dtype(dev),
            torch.is_inference_mode_enabled(),
        )

    def forward(self, *args: Any) -> Any:
        if _signature(args, "cuda-graphs") is None or torch.is_grad_enabled():
            return self.torch_module(*args)
        key = self._key(args)
        if key not in self._graphs:
            out = self.torch_module(*args)
            flat = _flat_outputs(out)
            self._graphs[key] = self._capture(args, flat) if flat is not None and len(self._graphs) < MAX_SHAPES else None
            return out
        entry = self._graphs[key]
        if entry is None:
            return self.torch_module(*args)
        graph, static_in, static_out = entry
        for s, a in zip(static_in, args):
            s.copy_(a)
        graph.replay()
        outs = [o.clone() for o in static_out]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _capture(self, args: tuple[torch.Tensor, ...], expected: list[torch.Tensor]) -> Any:
        """``(graph, static inputs, static outputs)`` of ``module(*args)``, or None."""
        dev = args[0].device
        # Autocast's cache of cast weights is emptied when the caller's autocast block ends; a
        # graph must cast inside itself, not read a cached copy that is freed after this frame.
        cast = torch.autocast(
            dev.type, dtype=torch.get_autocast_dtype(dev.type), enabled=torch.is_autocast_enabled(dev.type), cache_enabled=False
        )
        try:
            static_in = [a.detach().clone() for a in args]
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side), cast:
                for _ in range(2):  # warm-up off the capture: cuDNN picks its algorithms, lazy state is built
                    self.torch_module(*static_in)
            torch.cuda.current_stream(dev).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: the loop's reader and writer threads may call CUDA during a capture
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"), cast:
                static_out = _flat_outputs(self.torch_module(*static_in))
            if static_out is None:
                return None
            graph.replay()
            # cuDNN may pick another algorithm (TF32 in fp32) for the warm-up than for the eager call
            if not _close(static_out, expected, 1e-2 if not torch.is_autocast_enabled(dev.type) else 3e-2):
                log.debug("CUDA graph of %s differs from eager; it runs eagerly", type(self.torch_module).__name__)
                return None
        except Exception as exc:  # a host sync or a dynamic shape inside: this block stays eager
            log.debug("CUDA graph capture of %s failed: %s", type(self.torch_module).__name__, exc)
            return None
        return graph, static_in, static_out

    @property
    def captured_shapes(self) -> int:
        return sum(g is not None for g in self._graphs.values())


BACKENDS = ("onnxruntime", "compile", "cuda-graphs")


class Accelerator:
    """Moves the heavy blocks of ``net`` to ONNX Runtime, compiles them, or captures them as CUDA
    graphs, after watching one frame.

    Use: ``with accelerator.watch(): <predict and update of one frame>``; when the block ends,
    the blocks are chosen and swapped in (or compiled). Nothing happens if watching fails.

    Args:
        net: the network (blocks are replaced or compiled in place).
        backend: one of :data:`BACKENDS`.
        threads: ONNX Runtime's threads (default: torch's).
    """

    def __init__(self, net: nn.Module, backend: str = "onnxruntime", threads: int | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.net = net
        self.backend = backend
        self.threads = threads or torch.get_num_threads()
        self.blocks: list[str] = []
        self.done = False

    def describe(self) -> str:
        """What runs where, for reports: ``onnxruntime (frame() as one graph), torch``,
        ``onnxruntime (11 blocks), torch`` or ``torch``."""
        if not self.blocks:
            return "torch"
        entries = [b for b in self.blocks if b.endswith("()")]
        moved = f"{', '.join(entries)} as one graph" if entries else f"{len(self.blocks)} blocks"
        return f"{self.backend} ({moved}), torch"

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        modules = dict(self.net.named_modules())
        parent_of = {name: name.rsplit(".", 1)[0] if "." in name else "" for name in modules if name}
        calls: dict[str, dict[str, Any]] = {}
        active: list[str] = []
        counter = FlopCounterMode(display=False)
        start: list[int] = []

        def pre(name: str) -> Callable[..., None]:
            def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                rec = calls.setdefault(name, {"ok": True, "inside": True, "flops": 0, "seconds": 0.0})
                rec["ok"] &= not kwargs and _signature(args, self.backend) is not None
                # called from outside its parent's forward: its parent cannot be exported whole
                rec["inside"] &= bool(active) and active[-1] == parent_of[name]
                active.append(name)
                start.append((counter.get_total_flops(), time.thread_time()))

            return hook

        def post(name: str) -> Callable[..., None]:
            def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
                rec = calls[name]
                rec["ok"] &= _flat_outputs(out) is not None
                flops, t0 = start.pop()
                rec["flops"] += counter.get_total_flops() - flops
                rec["seconds"] += time.thread_time() - t0
                active.pop()

            return hook

        entries: dict[str, dict[str, Any]] = {}

        def watched_entry(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                rec = entries.setdefault(name, {"ok": True, "flops": 0})
                rec["ok"] &= set(kwargs) <= {"stage"} and _signature(args, self.backend) is not None
                flops = counter.get_total_flops()
                out = method(*args, **kwargs)
                rec["ok"] &= _flat_outputs(out) is not None
                rec["flops"] += counter.get_total_flops() - flops
                return out

            return call

        entry_names = list(getattr(self.net, "entry_points", ())) if self.backend == "onnxruntime" else []
        swapped = [n for n in entry_names if isinstance(vars(self.net).get(n), OrtEntry)]
        if swapped:  # another session's accelerator did
            self.done, self.blocks = True, [f"{n}()" for n in swapped]
            yield
            return
        for name in entry_names:  # an instance attribute hides the method for this frame
            object.__setattr__(self.net, name, watched_entry(name, getattr(self.net, name)))
        handles = []
        for name, m in modules.items():
            if name and not isinstance(m, (OrtBlock, GraphBlock)):
                handles.append(m.register_forward_pre_hook(pre(name), with_kwargs=True))
                handles.append(m.register_forward_hook(post(name), with_kwargs=True))
        t0 = time.thread_time()  # CPU time of this thread: other load on the machine does not count
        try:
            with counter:
                active.append("")  # the network's own entry points: their direct children are "inside"
                yield
        finally:
            for h in handles:
                h.remove()
            for name in entry_names:
                object.__delattr__(self.net, name)
        self.done = True
        try:
            total = counter.get_total_flops()
            chosen = [n for n, rec in entries.items() if rec["ok"] and rec["flops"] >= MIN_SHARE * total]
            if chosen:
                exporter = _Exporter(self.threads)
                for name in chosen:
                    object.__setattr__(self.net, name, OrtEntry(self.net, name, exporter))
                self.blocks = [f"{name}()" for name in chosen]
                log.debug("%s runs %s", self.backend, ", ".join(self.blocks))
                return
            self._swap(modules, calls, total, time.thread_time() - t0)
        except Exception as exc:  # never fail a run over an optimisation
            log.debug("%s not used: %s", self.backend, exc)

    def _swap(self, modules: dict[str, nn.Module], calls: dict[str, dict[str, Any]], total: int, seconds: float) -> None:

        def owns_subtree(name: str) -> bool:
            """Every called module under ``name`` was called only from its parent's forward."""
            prefix = name + "."
            return all(rec["inside"] for sub, rec in calls.items() if sub.startswith(prefix))

        chosen = []

        def visit(prefix: str) -> None:
            for child, _ in modules[prefix].named_children() if prefix else self.net.named_children():
                name = f"{prefix}.{child}" if prefix else child
                rec = calls.get(name)
                if rec is not None and rec["ok"] and owns_subtree(name):
                    if rec["flops"] >= MIN_SHARE * total or rec["seconds"] >= MIN_TIME_SHARE * seconds:
                        chosen.append(name)
                else:
                    visit(name)

        visit("")
        if not chosen:
            return
        if self.backend == "compile":
            for name in chosen:
                modules[name].compile(dynamic=False)
        else:
            exporter = _Exporter(self.threads) if self.backend == "onnxruntime" else None
            pool = torch.cuda.graph_pool_handle() if self.backend == "cuda-graphs" else None
            for name in chosen:
                parent_name, _, attr = name.rpartition(".")
                parent = modules[parent_name] if parent_name else self.net
                block = OrtBlock(modules[name], exporter) if exporter is not None else GraphBlock(modules[name], pool)
                setattr(parent, attr, block)
        self.blocks = chosen
        log.debug("%s runs %s", self.backend, ", ".join(chosen))
