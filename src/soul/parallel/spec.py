"""The ``--parallel`` spec: how torchrun's processes split one generation (no torch here).

``ulysses=U,cfg=C``: ``U`` processes share every transformer call by splitting its token sequence
(Ulysses sequence parallelism), and ``C`` groups of them share a step's guidance passes. ``U * C``
processes in all, which must be the world size torchrun launched.
"""

from __future__ import annotations

from dataclasses import dataclass

from soul.errors import InputError

_KEYS = ("ulysses", "cfg")
_FIX = "write it like ulysses=2,cfg=2 (each a whole number >= 1; their product is the number of processes)"


@dataclass(frozen=True)
class ParallelSpec:
    """Degrees of sequence (Ulysses) and guidance (CFG) parallelism; ``world_size = ulysses * cfg``."""

    ulysses: int = 1
    cfg: int = 1

    def __post_init__(self) -> None:
        for name in _KEYS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError("--parallel", f"{name}={value!r} is not a whole number >= 1", _FIX)

    @property
    def world_size(self) -> int:
        return self.ulysses * self.cfg

    @classmethod
    def parse(cls, text: str) -> ParallelSpec:
        """``"ulysses=2,cfg=2"`` (either part may be left out, meaning 1; order free)."""
        values: dict[str, int] = {}
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            key, sep, raw = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in _KEYS:
                raise InputError("--parallel", f"{part!r} is not ulysses=N or cfg=N", _FIX)
            if key in values:
                raise InputError("--parallel", f"{key} is given twice", _FIX)
            try:
                values[key] = int(raw.strip())
            except ValueError:
                raise InputError("--parallel", f"{part!r}: {raw.strip()!r} is not a whole number", _FIX) from None
        if not values:
            raise InputError("--parallel", f"{text!r} names no degree", _FIX)
        return cls(**values)

    def __str__(self) -> str:
        return f"ulysses={self.ulysses},cfg={self.cfg}"
