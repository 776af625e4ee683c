"""Load a script of benchmarks/ as a module, so tests can call its functions and main()."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/NAME.py as module `soul_bench_NAME` (registered in sys.modules: dataclasses look
    their module up while the file runs)."""
    spec = importlib.util.spec_from_file_location(f"soul_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
