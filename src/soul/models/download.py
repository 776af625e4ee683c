"""Fetching official weights on a connected machine with huggingface_hub.

Nothing in Soul downloads at run time: generation reads local directories only. This module is
the one place that talks to the Hub, and it checks reachability first with a short timeout so an
offline machine gets an answer in seconds instead of a hang in the middle of a multi-GB transfer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from soul.config import SoulConfig
from soul.errors import InputError, RuntimeFailure

# Only what Soul loads: the diffusers-format backbone (no original .pth duplicates) and the encoder.
BACKBONE_PATTERNS = [
    "model_index.json",
    "transformer/*",
    "vae/*",
    "text_encoder/*",
    "tokenizer/*",
    "scheduler/*",
]
AUDIO_ENCODER_PATTERNS = ["config.json", "preprocessor_config.json", "*.safetensors", "vocab.json", "tokenizer_config.json"]
REACH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DownloadPlan:
    """One repository to fetch and which of its files Soul needs."""

    component: str
    repo_id: str
    patterns: list[str]


def plan_downloads(config: SoulConfig, components: list[str] | None = None) -> list[DownloadPlan]:
    """The repositories a preset needs; presets built from config only (tiny) need none."""
    plans = [DownloadPlan("backbone", config.hub.backbone, BACKBONE_PATTERNS)] if config.hub.backbone else []
    if plans and config.audio_encoder.hub_id:
        plans.append(DownloadPlan("audio_encoder", config.audio_encoder.hub_id, AUDIO_ENCODER_PATTERNS))
    if config.hub.soul_layers:
        plans.append(DownloadPlan("soul_layers", config.hub.soul_layers, ["*"]))
    if components:
        known = {p.component for p in plans}
        unknown = sorted(set(components) - known)
        if unknown:
            raise InputError(f"--component {unknown[0]}", "not part of this preset", f"choose from: {', '.join(sorted(known))}")
        plans = [p for p in plans if p.component in components]
    return plans


def check_hub_reachable(repo_id: str, endpoint: str | None = None, token: str | None = None) -> None:
    """Fail fast, in one line, when the Hub cannot be reached or the repository is not visible."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        raise RuntimeFailure("HF_HUB_OFFLINE is set, so nothing can be downloaded (unset it, or copy the weights and pass --checkpoint DIR)")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi(endpoint=endpoint).model_info(repo_id, timeout=REACH_TIMEOUT_S, token=token)
    except GatedRepoError:
        raise RuntimeFailure(f"{repo_id} is gated: accept its licence on the Hub and log in (hf auth login)") from None
    except RepositoryNotFoundError:
        raise InputError(repo_id, "repository not found on the Hub", "check the preset's hub ids") from None
    except Exception as err:  # any network failure: DNS, refused, timeout, proxy
        raise RuntimeFailure(
            f"cannot reach the Hugging Face Hub for {repo_id} ({type(err).__name__}); soul download needs network — "
            "on an offline machine copy the weights there and pass --checkpoint DIR"
        ) from None


def download(plan: DownloadPlan, cache_dir: Path | None = None, endpoint: str | None = None, token: str | None = None) -> Path:
    """Fetch one repository's needed files into the Hugging Face cache; returns the snapshot path."""
    from huggingface_hub import snapshot_download

    check_hub_reachable(plan.repo_id, endpoint=endpoint, token=token)
    try:
        path = snapshot_download(
            plan.repo_id,
            cache_dir=str(cache_dir) if cache_dir else None,
            allow_patterns=plan.patterns,
            endpoint=endpoint,
            token=token,
            etag_timeout=REACH_TIMEOUT_S,
        )
    except Exception as err:
        raise RuntimeFailure(f"download of {plan.repo_id} failed ({type(err).__name__}: {err}); re-run to resume") from None
    return Path(str(path))
