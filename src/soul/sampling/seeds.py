"""One way to derive independent seeds from a run seed and a position.

Long videos seed each chunk's noise and the trainer seeds each global sample's draws from
(run seed, index). Both need the same two properties: a pure function of its inputs (so a resumed
or re-split run draws exactly what an uninterrupted one would) and well-separated streams for
neighbouring indices. numpy's ``SeedSequence`` hashes its entropy words for exactly that, so every
derived seed in Soul goes through ``mix_seed``.
"""

from __future__ import annotations

import numpy as np

SEED_MASK = 2**63 - 1
"""Derived seeds fit a non-negative int64 (what ``torch.Generator.manual_seed`` accepts)."""


def mix_seed(seed: int, *keys: int) -> int:
    """A seed for the stream ``keys`` of run ``seed``: a pure, well-mixed function of all of them.

    ``keys`` are non-negative integers (chunk index, global sample index, ...); the run seed may be
    any integer (it is folded into 63 bits).
    """
    entropy = [int(seed) & SEED_MASK, *(int(k) for k in keys)]
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & SEED_MASK
