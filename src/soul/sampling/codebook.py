"""Threshold-aware codebook replacement: pull drifted latent patches back toward the best frames.

Long videos drift because each chunk continues from the previous chunk's last frames, so small
colour or identity errors compound. The first chunk (conditioned directly on the portrait) is the
best the run will ever have, so its latent patch vectors, with the anchor's, form a codebook. Before
a motion prefix is reused, each of its patch vectors is compared with its nearest codebook entry:
below the similarity threshold the vector has drifted and is replaced by (a blend toward) that
entry; above it the vector is left alone, so legitimate motion survives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def to_patch_vectors(latents: torch.Tensor, patch: int) -> torch.Tensor:
    """[C, T, H, W] latents -> [T, H/p, W/p, C*p*p] patch vectors (the transformer's token grid)."""
    c, t, h, w = latents.shape
    if h % patch or w % patch:
        raise ValueError(f"latent size {h}x{w} is not divisible by patch {patch}")
    x = latents.reshape(c, t, h // patch, patch, w // patch, patch)
    return x.permute(1, 2, 4, 0, 3, 5).reshape(t, h // patch, w // patch, c * patch * patch)


def from_patch_vectors(vectors: torch.Tensor, channels: int, patch: int) -> torch.Tensor:
    """Inverse of `to_patch_vectors`."""
    t, hp, wp, _ = vectors.shape
    x = vectors.reshape(t, hp, wp, channels, patch, patch)
    return x.permute(3, 0, 1, 4, 2, 5).reshape(channels, t, hp * patch, wp * patch)


@dataclass
class ReplacementReport:
    """What one application did: logged per chunk in the run summary."""

    replaced_fraction: float
    mean_similarity: float
    threshold: float

    def as_dict(self) -> dict[str, float]:
        return {"replaced_fraction": self.replaced_fraction, "mean_similarity": self.mean_similarity, "threshold": self.threshold}


class LatentCodebook:
    """Patch vectors of the anchor and first chunk, with a drift threshold derived from them.

    Similarity is the cosine between vectors centred on the codebook mean: raw latent vectors share
    a large common component (the average colour), which would make every cosine close to 1 and
    hide drift.
    """

    def __init__(
        self,
        entries: torch.Tensor,
        channels: int,
        patch: int,
        threshold: float,
        center: torch.Tensor,
    ) -> None:
        self.entries = entries
        self.channels = channels
        self.patch = patch
        self.threshold = float(threshold)
        self.center = center
        self._unit = F.normalize(entries - center, dim=-1)

    @classmethod
    def build(
        cls,
        anchor: torch.Tensor,
        first_chunk: torch.Tensor,
        *,
        patch: int = 2,
        threshold: float | None = None,
        quantile: float = 0.02,
        max_entries: int = 16384,
        generator: torch.Generator | None = None,
    ) -> "LatentCodebook":
        """Codebook from clean latents `anchor` [C, 1, H, W] and `first_chunk` [C, T, H, W].

        Unless `threshold` is given it is the `quantile` of the first chunk's own nearest-entry
        similarities, each frame measured against the codebook without that frame (its own vectors
        would match themselves exactly). So about `quantile` of good frames' patches would count as
        drifted: the threshold sits at the edge of what the run's best frames look like.
        """
        if anchor.dim() != 4 or first_chunk.dim() != 4:
            raise ValueError("anchor and first_chunk must be [C, T, H, W]")
        anchor_v = to_patch_vectors(anchor.float(), patch).reshape(-1, anchor.shape[0] * patch * patch)
        chunk_v = to_patch_vectors(first_chunk.float(), patch)
        per_frame = chunk_v.reshape(chunk_v.shape[0], -1, chunk_v.shape[-1])
        entries = torch.cat([anchor_v, per_frame.reshape(-1, per_frame.shape[-1])])
        frame_of = torch.cat(
            [torch.full((anchor_v.shape[0],), -1), torch.arange(per_frame.shape[0]).repeat_interleave(per_frame.shape[1])]
        )
        if entries.shape[0] > max_entries:  # keep the anchor, subsample the chunk evenly at random
            keep_chunk = max_entries - anchor_v.shape[0]
            idx = torch.randperm(entries.shape[0] - anchor_v.shape[0], generator=generator)[:keep_chunk] + anchor_v.shape[0]
            idx = torch.cat([torch.arange(anchor_v.shape[0]), idx.sort().values])
            entries, frame_of = entries[idx], frame_of[idx]
        center = entries.mean(dim=0)
        if threshold is None:
            unit = F.normalize(entries - center, dim=-1)
            sims = []
            for f in range(per_frame.shape[0]):
                query = F.normalize(per_frame[f] - center, dim=-1)
                others = unit[frame_of != f]
                sims.append((query @ others.T).max(dim=1).values)
            threshold = float(torch.quantile(torch.cat(sims), quantile))
        return cls(entries, anchor.shape[0], patch, threshold, center)

    def nearest(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Best cosine similarity and nearest entry for each vector [N, D]."""
        query = F.normalize(vectors.float() - self.center, dim=-1)
        best_sim = torch.empty(query.shape[0])
        best_idx = torch.empty(query.shape[0], dtype=torch.long)
        for s in range(0, query.shape[0], 4096):  # bounded memory for large prefixes
            sims = query[s : s + 4096] @ self._unit.T
            best_sim[s : s + 4096], best_idx[s : s + 4096] = sims.max(dim=1)
        return best_sim, self.entries[best_idx]

    def apply(self, prefix: torch.Tensor, blend: float = 1.0) -> tuple[torch.Tensor, ReplacementReport]:
        """Replace drifted patch vectors of `prefix` [C, T, H, W]; others are returned bit-identical."""
        if not 0.0 <= blend <= 1.0:
            raise ValueError("blend must be in [0, 1]")
        vectors = to_patch_vectors(prefix.float(), self.patch)
        flat = vectors.reshape(-1, vectors.shape[-1])
        sim, nearest = self.nearest(flat)
        drifted = sim < self.threshold
        out = flat.clone()
        out[drifted] = (1 - blend) * flat[drifted] + blend * nearest[drifted]
        restored = from_patch_vectors(out.reshape(vectors.shape), self.channels, self.patch).to(prefix.dtype)
        # keep untouched positions bit-identical (no float round trip through the reshape)
        mask = from_patch_vectors(drifted.reshape(*vectors.shape[:3], 1).expand_as(vectors).float(), self.channels, self.patch).bool()
        result = torch.where(mask, restored, prefix)
        report = ReplacementReport(
            replaced_fraction=float(drifted.float().mean()),
            mean_similarity=float(sim.mean()),
            threshold=self.threshold,
        )
        return result, report
