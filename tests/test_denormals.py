"""Subnormal floats are flushed to zero in torch sessions and training on the CPU, in every
thread of torch's pool (x86 arithmetic on subnormals is up to ~100x slower)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CHECK = """
import torch
torch.set_num_threads(2)
{setup}
a = torch.full((256, 256), 1e-20)
b = torch.full((256, 256), 1e-20)
c = a @ b  # every product is 1e-40: subnormal in float32
print(int((c != 0).sum()), int((torch.tensor([1e-39]) * 1.0 != 0).sum()))
"""


def _nonzero(setup: str) -> tuple[int, int]:
    r = subprocess.run([sys.executable, "-c", CHECK.format(setup=setup)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = r.stdout.split()
    return int(a), int(b)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="FTZ/DAZ are x86 settings")
def test_a_torch_session_on_the_cpu_flushes_subnormals_in_every_thread() -> None:
    assert _nonzero("") == (256 * 256, 1)  # without vostool: subnormal results everywhere
    session = "import vostool; vostool.create_session('agss', method_kwargs={'variant': 'tiny'}, weights='random', device='cpu')"
    assert _nonzero(session) == (0, 0)
