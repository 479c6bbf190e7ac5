"""The package's import structure: every module imports on its own, and imports flow one way
(a module imports only from its own layer or the layers below it; nothing imports in a circle)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vostool"

LAYERS = [
    ("vostool.errors", "vostool.options", "vostool.version", "vostool.padding"),
    ("vostool.io",),
    ("vostool.models",),
    ("vostool.weights",),
    ("vostool.flow",),
    ("vostool.datasets",),
    ("vostool.inference",),
    ("vostool.batch",),
    ("vostool.bench",),
    ("vostool.train",),
    ("vostool.api",),
    ("vostool.cli", "vostool.__main__", "vostool"),
]
"""Lowest first: io, flow and models below inference, inference below the job runner (batch), the
runner below bench, the API below the CLI."""


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """vostool modules imported anywhere in ``path`` (module level or inside functions)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found.add(target)
    return found


def _layer(module: str) -> int:
    best = max((prefix for layer in LAYERS for prefix in layer if module == prefix or module.startswith(prefix + ".")), key=len)
    return next(i for i, layer in enumerate(LAYERS) if best in layer)


def test_imports_flow_one_way() -> None:
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    upward = [f"{m} -> {t}" for m, targets in graph.items() for t in sorted(targets) if _layer(t) > _layer(m)]
    assert upward == []
    # No cycles: repeatedly drop modules that import nothing left; whatever remains is in a cycle.
    left = {m: set(t) for m, t in graph.items()}
    while True:
        leaves = {m for m, t in left.items() if not t}
        if not leaves:
            break
        left = {m: t - leaves for m, t in left.items() if m not in leaves}
    assert sorted(left) == []


def test_every_module_imports_alone() -> None:
    """Each module imported first, in a process where no other vostool module is loaded yet
    (``vostool.__main__`` is the ``python -m vostool`` script: it runs the CLI when imported)."""
    names = sorted(m for m in _modules() if m != "vostool.__main__")
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'vostool' or m.startswith('vostool.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert r.returncode == 0, r.stderr[-2000:]


def test_help_loads_no_torch() -> None:
    """``vostool --help`` and each command's ``--help`` answer without importing torch (seconds)."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from vostool.cli import SUBCOMMANDS, cli\n"
        "for args in [['--help']] + [[c, '--help'] for c in SUBCOMMANDS]:\n"
        "    r = CliRunner().invoke(cli, args)\n"
        "    assert r.exit_code == 0 and 'Usage' in r.output, (args, r.output)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(PACKAGE.parent))
    assert r.returncode == 0, r.stderr[-2000:]
