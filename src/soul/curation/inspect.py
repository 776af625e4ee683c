"""Summaries of a curated folder's manifest: what `soul data inspect` prints."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from soul.errors import InputError

DISTRIBUTIONS = ("duration_s", "speech_ratio", "face_height_ratio", "lmsync_conf", "lmsync_offset", "dnsmos_ovrl", "motion_mean", "blur")


def load_manifest(out: str | Path) -> list[dict]:
    import pyarrow.parquet as pq

    path = Path(out) / "manifest.parquet" if Path(out).is_dir() else Path(out)
    if not path.is_file():
        raise InputError(path, "no manifest.parquet here", "run `soul data annotate INPUT --out DIR` first")
    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises several types for damaged files
        raise InputError(path, f"is not a readable Parquet file ({err.__class__.__name__})", "re-run soul data annotate") from None


def summarize(rows: list[dict]) -> dict:
    """Counts per category and drop reason, and quantiles of the main annotations over kept clips."""
    kept = [r for r in rows if r["kept"]]
    reasons = Counter((r["drop_stage"] or "?") + ": " + _reason_kind(r["drop_reason"]) for r in rows if not r["kept"])
    dists = {}
    for col in DISTRIBUTIONS:
        vals = np.array([r[col] for r in kept if r.get(col) is not None], dtype=np.float64)
        if vals.size:
            q = np.percentile(vals, [0, 25, 50, 75, 100])
            dists[col] = {"n": int(vals.size), "min": q[0], "p25": q[1], "median": q[2], "p75": q[3], "max": q[4]}
    return {
        "clips": len(rows),
        "kept": len(kept),
        "dropped": len(rows) - len(kept),
        "kept_hours": sum(r["duration_s"] or 0.0 for r in kept) / 3600.0,
        "categories": dict(Counter(r["category"] or "none" for r in kept)),
        "drop_reasons": dict(reasons),
        "distributions": dists,
    }


def _reason_kind(reason: str | None) -> str:
    """The reason without its numbers, so identical causes group together."""
    if not reason:
        return "unknown"
    return reason.split(" (")[0].split(":")[0]
