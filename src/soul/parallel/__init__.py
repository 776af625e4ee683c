"""Multi-process inference: Ulysses sequence parallelism and guidance (CFG) parallelism.

``torchrun --nproc_per_node N -m soul generate ... --parallel ulysses=U,cfg=C`` (``U * C = N``):
every rank runs the same generation; ``U`` ranks split each transformer call's tokens
(``ulysses.py``, through diffusers' context-parallel hooks plus a frame-local audio hook), ``C``
groups of them split each step's guidance passes (``cfg.py``); rank 0 writes (``runtime.py``).
From Python::

    runtime = init_parallel("ulysses=2")      # under torchrun
    pipe.enable_parallel(runtime)             # SoulPipeline: its transformer and sampling loop

Sits between ``soul.pipelines`` (which uses it) and ``soul.sampling`` / ``soul.models`` (which it
extends). ``spec.py`` imports no torch, so the CLI can check ``--parallel`` at once.
"""

from soul.parallel.spec import ParallelSpec

__all__ = ["ParallelRuntime", "ParallelSpec", "init_parallel"]


def __getattr__(name: str):  # torch-heavy parts on first use
    if name in ("ParallelRuntime", "init_parallel"):
        from soul.parallel import runtime

        return getattr(runtime, name)
    raise AttributeError(name)
