"""The smallest op behind the native crashes of ``vostool train`` on the CPU, run case by case.

The op: the weight gradient of a strided 1x1 convolution (a ResNet shortcut) whose input is
channels_last (NHWC) and has fewer channels than oneDNN's channel block (8 with AVX2, 16 with
AVX-512)::

    conv = torch.nn.Conv2d(4, 8, kernel_size=1, stride=2, bias=False)
    x = torch.randn(1, 4, 64, 112).to(memory_format=torch.channels_last)
    conv(x).sum().backward()      # oneDNN jit_1x1 backward_weights, src acdb (nhwc)

oneDNN 3.12.0 (bundled with torch 2.13.0, 2.14.0 and 2.14.1) addresses the "reduce to unit
stride" workspace of this kernel with the blocked stride instead of the real channel count and
writes past it: heap corruption (``free(): invalid next size``, double free), a segfault, an
endless spin in the weights reducer, or silently wrong gradients, depending on what lies after
the workspace (upstream report: uxlfoundation/oneDNN#6035). The same shape in NCHW takes the
blocked kernels and is correct; so is the NHWC case with at least a block of input channels.

vostool training met it because the training batches were channels_last by accident
(``permute(...).float()`` keeps the NHWC strides of the uint8 frames), so every training
convolution ran the NHWC kernels; with ``--base-width 4`` on an AVX2 CPU the first shortcut
(4 -> 8 channels, stride 2, 64x112 at ``--size 240``) is exactly this op, and ``vostool train``
died in ``loss.backward()`` (it passed at ``--size 64``, where PyTorch does not use oneDNN for
such small convolutions, and with ``torch.backends.mkldnn.enabled = False``). The training
recipes now build NCHW batches (``vostool.train.recipes.images_to_tensor``).

Each case runs in its own subprocess (a crash or a hang must not end the table), with a
timeout; the weight gradient is compared with PyTorch's non-oneDNN convolution.

    python benchmarks/onednn_nhwc_1x1_backward.py [--threads 1 2] [--timeout 60] [--iters 5]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys

# (label, in channels, out channels, batch, height, width, channels_last)
CASES = [
    ("vostool agss --base-width 4 shortcut, NHWC", 4, 8, 1, 64, 112, True),
    ("same op, NCHW (the workaround)", 4, 8, 1, 64, 112, False),
    ("upstream reproducer 4->8 mb32 32x32, NHWC", 4, 8, 32, 32, 32, True),
    ("IC 8 = AVX2 block, NHWC", 8, 16, 32, 32, 32, True),
    ("IC 12 (above the AVX2 block), NHWC", 12, 16, 32, 32, 32, True),
    ("help example's first shortcut 32->64, NHWC", 32, 64, 1, 64, 112, True),
]

CHILD = r"""
import json, sys, torch
ic, oc, mb, h, w, cl, threads, iters = json.loads(sys.argv[1])
torch.set_num_threads(threads)
torch.manual_seed(0)
conv = torch.nn.Conv2d(ic, oc, kernel_size=1, stride=2, bias=False)
worst = 0.0
for _ in range(iters):
    x = torch.randn(mb, ic, h, w)
    if cl:
        x = x.to(memory_format=torch.channels_last)
    conv.weight.grad = None
    conv(x).square().sum().backward()
    with torch.backends.mkldnn.flags(enabled=False):
        ref_w = conv.weight.detach().clone().requires_grad_()
        torch.nn.functional.conv2d(x.contiguous(), ref_w, stride=2).square().sum().backward()
    err = ((conv.weight.grad - ref_w.grad).abs().max() / ref_w.grad.abs().max()).item()
    worst = max(worst, err)
print(json.dumps({"rel_err": worst}))
"""


def run_case(args: list, timeout: float) -> str:
    """One case in a fresh interpreter; returns a short outcome."""
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"HANG (killed after {timeout:.0f} s)"
    if proc.returncode != 0:
        sig = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
        name = signal.Signals(sig).name if 0 < sig < 65 else f"exit {proc.returncode}"
        detail = next((ln for ln in proc.stderr.splitlines() if "free()" in ln or "corrupt" in ln or "double free" in ln), "")
        return f"CRASH {name}" + (f" ({detail.strip()})" if detail else "")
    err = json.loads(proc.stdout.strip().splitlines()[-1])["rel_err"]
    return f"ok, dW rel. error {err:.1e}" if err < 1e-3 else f"WRONG dW, rel. error {err:.3g}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    import torch

    cfg = [ln.strip() for ln in torch.__config__.show().splitlines() if "MKL-DNN" in ln or "CPU capability" in ln]
    print(f"torch {torch.__version__}; " + "; ".join(cfg))
    for label, ic, oc, mb, h, w, cl in CASES:
        for t in a.threads:
            out = run_case([ic, oc, mb, h, w, cl, t, a.iters], a.timeout)
            print(f"{label:46s} threads {t}: {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
