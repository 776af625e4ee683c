"""`soul bench score`: every metric for every case of a suite, written in Soul-Bench's shape.

Outputs in `--out DIR`:
- `evaluation_results.json`: Soul-Bench's list of `{video_path, audio_path, text_path, image_path,
  results: {group: {...} | {"error": ...}}}` entries, one per video, so its `calculate_average.py`
  style tooling reads ours; our offline metrics are the group `soul_offline`.
- `scores.json`: the flat per-case metrics, long-term curves, suite summary and the list of
  skipped metrics with the file each needs: what `soul bench report` reads.
  Multi-person cases add the group `soul_people` (per-person lip-sync binding, `soul.bench.people`).
- `cases/<id>.json`: per-case cache; a re-run skips cases whose video has not changed (resumable).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from soul.bench import metrics as M
from soul.bench.people import people_metric
from soul.bench.suite import Case, load_suite, output_for
from soul.bench.weighted import SPECS, WeightsConfig, skipped
from soul.errors import InputError
from soul.media.audio import MODEL_SAMPLE_RATE, load_audio

OFFLINE_GROUPS = ("identity", "lmsync", "quality", "flicker", "av_align", "curves", "people")
FACE_GROUPS = {"identity", "lmsync", "quality", "curves", "people"}
LONG_CURVE_MIN_SECONDS = 20.0
SCORES_VERSION = 1

ProgressFn = Callable[[str, int, int], None]


@dataclass
class ScoreOptions:
    """What to compute: offline groups (all by default), weights for the weighted metrics."""

    groups: tuple[str, ...] = OFFLINE_GROUPS
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    method: str | None = None
    force: bool = False
    curve_seconds: float = M.WINDOW_SECONDS


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _image_array(path: Path) -> np.ndarray:
    from soul.media.image import load_image

    return np.asarray(load_image(path).convert("RGB"))


def score_clip(clip: M.Clip, reference: np.ndarray | None, *, groups: tuple[str, ...] = OFFLINE_GROUPS,
               analyzer: Any = None, long_case: bool = False, curve_seconds: float = M.WINDOW_SECONDS,
               speaker_audio: Sequence[np.ndarray] = ()) -> dict[str, Any]:
    """Offline metrics of one decoded clip against its reference image (None: no identity).

    `speaker_audio` (16 kHz mono, one track per person, left to right) adds the `people` binding
    measure of a multi-person case; without it the group has nothing to measure and is left out.
    """
    unknown = set(groups) - set(OFFLINE_GROUPS)
    if unknown:
        raise InputError("metrics", f"unknown metric group(s) {sorted(unknown)}", f"choose from {', '.join(OFFLINE_GROUPS)}")
    people = "people" in groups and len(speaker_audio) > 0
    needs_faces = bool((FACE_GROUPS - {"people"}) & set(groups)) or people
    analyzer = analyzer or (M._analyzer() if needs_faces else None)
    out: dict[str, Any] = {"fps": clip.fps, "num_frames": len(clip.frames), "duration": clip.duration}
    refs = M.reference_embeddings(reference, analyzer) if reference is not None and ({"identity", "curves"} & set(groups)) else []
    if "identity" in groups:
        out.update(M.id_dlib_dist(clip, refs, analyzer) if reference is not None else {"id_dlib_dist": None, "id_dlib_note": "no reference"})
    if "lmsync" in groups:
        out.update(M.lmsync_metric(clip, analyzer))
    regions = None
    if {"quality", "curves"} & set(groups):
        regions = M.face_regions(clip, analyzer)
    if "quality" in groups:
        out.update(M.quality(clip, regions))
    if "flicker" in groups:
        out.update(M.flicker(clip))
    if "av_align" in groups:
        out.update(M.av_align(clip))
    if people:
        out.update(people_metric(clip.frames, clip.fps, speaker_audio, clip.sample_rate, analyzer))
    if "curves" in groups and (long_case or clip.duration >= LONG_CURVE_MIN_SECONDS):
        out["long_term"] = M.long_term_curves(clip, refs, regions, analyzer, seconds=curve_seconds)
    return out


def _weighted_case(case: Case, clip: M.Clip, reference: np.ndarray, cfg: WeightsConfig, cache: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Soul-Bench groups from the weighted metrics that can run (the rest are listed as skipped)."""
    groups: dict[str, dict[str, Any]] = {}
    spec = {s.name: s for s in SPECS}
    if spec["syncnet"].skip_reason(cfg) is None:
        from soul.analysis.faces import face_tracks
        from soul.bench import syncnet as S

        model = cache.setdefault("syncnet", S.load_syncnet(cfg.syncnet))
        idx = S.resample_to_25fps(len(clip.frames), clip.fps)
        frames = [clip.frames[i] for i in idx]
        tracks = face_tracks(frames, cache.setdefault("analyzer", M._analyzer()), detect_every=5)
        results = []
        for t in tracks:
            boxes = [(b.left, b.top, b.right, b.bottom) for b in (t.box_at(i) for i in range(len(frames)))]
            try:
                results.append(S.syncnet_score(model, frames, boxes, clip.audio))
            except InputError as err:
                groups["latent_sync"] = {"error": err.problem}
        if results:
            groups["latent_sync"] = {
                "confidence": float(np.mean([r.lse_c for r in results])),
                "distance": float(np.mean([r.lse_d for r in results])),
                "av_offset": int(results[0].offset),
                "num_crops": len(results),
                "crop_offsets": [int(r.offset) for r in results],
                "crop_confidences": [float(r.lse_c) for r in results],
            }
        elif "latent_sync" not in groups:
            groups["latent_sync"] = {"error": f"Face not detected in {case.id}"}
    if spec["arcface"].skip_reason(cfg) is None:
        from soul.bench.weighted import arcface_csim, load_arcface

        app = cache.setdefault("arcface", load_arcface(Path(cfg.arcface_root)))
        groups["arcface_consistency"] = arcface_csim(clip.frames, reference, app)
    if spec["clip"].skip_reason(cfg) is None:
        from soul.bench.weighted import clip_score

        groups["clip_score"] = {"clip_score": clip_score(Path(cfg.clip), clip.frames, case.prompt)}
    if spec["vlm_judge"].skip_reason(cfg) is None:
        from soul.bench.weighted import vlm_judge

        groups["qwen_vl"] = vlm_judge(str(cfg.judge_url), clip.frames, case.prompt, model=cfg.judge_model)
    if spec["video_quality"].skip_reason(cfg) is None:
        from soul.bench.weighted import CommandQualityScorer

        groups["video_quality"] = CommandQualityScorer(str(cfg.vq_cmd))(clip.path, case.prompt)
    return groups


def _flatten(groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    ls = groups.get("latent_sync", {})
    if "confidence" in ls:
        flat.update(sync_c=ls["confidence"], sync_d=ls["distance"], syncnet_offset=ls["av_offset"])
    for name in ("arcface_consistency", "clip_score", "qwen_vl", "video_quality"):
        for k, v in groups.get(name, {}).items():
            if k in ("arcface_csim", "clip_score", "text_alignment", "video_quality"):
                flat[k] = v
    return flat


def _suite_fid_fvd(cases: list[Case], outputs: Path, cfg: WeightsConfig) -> dict[str, Any]:
    """Suite-level FID (frames vs ground-truth frames, else reference images) and FVD (16-frame
    segments vs ground-truth videos); each None with a note when it cannot be computed."""
    import torch

    from soul.bench.weighted import frechet_distance, i3d_features, inception_features, video_segments

    out: dict[str, Any] = {}
    spec = {s.name: s for s in SPECS}
    if spec["fid"].skip_reason(cfg) is None:
        det = torch.jit.load(str(cfg.inception), map_location="cpu").eval()
        real, fake = [], []
        for c in cases:
            path = output_for(outputs, c.id)
            if not path.is_file():
                continue
            clip = M.load_clip(path, max_side=299)
            fake += [clip.frames[i] for i in M.evenly_spaced(len(clip.frames), 16)]
            if c.ground_truth and Path(c.ground_truth).is_file():
                gt = M.load_clip(c.ground_truth, max_side=299)
                real += [gt.frames[i] for i in M.evenly_spaced(len(gt.frames), 16)]
            else:
                real.append(M._downscale(_image_array(c.image), 299)[0])
        try:
            sizes = {f.shape for f in real + fake}
            if len(sizes) > 1:  # batches need one size; Inception resizes to 299 inside anyway
                import cv2

                real = [cv2.resize(f, (299, 299), interpolation=cv2.INTER_AREA) for f in real]
                fake = [cv2.resize(f, (299, 299), interpolation=cv2.INTER_AREA) for f in fake]
            out["fid"] = frechet_distance(inception_features(det, real), inception_features(det, fake))
        except InputError as err:
            out.update(fid=None, fid_note=err.problem)
    if spec["fvd"].skip_reason(cfg) is None:
        det = torch.jit.load(str(cfg.i3d), map_location="cpu").eval()
        real, fake = [], []
        for c in cases:
            path = output_for(outputs, c.id)
            if path.is_file() and c.ground_truth and Path(c.ground_truth).is_file():
                fake += video_segments(M.load_clip(path, max_side=224).frames)
                real += video_segments(M.load_clip(c.ground_truth, max_side=224).frames)
        if min(len(real), len(fake)) < 2:
            out.update(fvd=None, fvd_note="needs ground-truth videos (the suite's ground_truth field) for at least two 16-frame segments")
        else:
            out["fvd"] = frechet_distance(i3d_features(det, real), i3d_features(det, fake))
    return out


def summarize(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean of every numeric metric over the cases that have it, and how many had it."""
    keys: dict[str, list[float]] = {}
    for flat in cases.values():
        for k, v in flat.items():
            if k in ("fps", "num_frames", "seconds", "people_found", "people_expected") or k.endswith(("_frames", "_frames_with_face", "_peaks", "_faces")):
                continue  # bookkeeping, not a metric
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.setdefault(k, []).append(float(v))
    return {k: {"mean": float(np.mean(v)), "n": len(v)} for k, v in sorted(keys.items())}


def score_suite(suite: str | Path, outputs: str | Path, out: str | Path, options: ScoreOptions | None = None,
                progress: ProgressFn | None = None) -> dict[str, Any]:
    """Score `outputs/<id>.mp4` for every case of `suite`; write results into `out`."""
    options = options or ScoreOptions()
    suite, outputs, out = Path(suite), Path(outputs), Path(out)
    cases = load_suite(suite)
    if not outputs.is_dir():
        raise InputError(outputs, "outputs folder not found", "run soul bench run first, or give the folder of <id>.mp4 files")
    (out / "cases").mkdir(parents=True, exist_ok=True)
    cfg = options.weights
    cache: dict[str, Any] = {}
    entries, flat_cases = [], {}
    for n, case in enumerate(cases):
        if progress:
            progress(case.id, n, len(cases))
        video = output_for(outputs, case.id)
        entry = {"video_path": str(video), "audio_path": str(case.audio), "text_path": str(suite / f"{case.id}.json"),
                 "image_path": str(case.image), "category": case.category, "long": case.long}
        cache_file = out / "cases" / f"{case.id}.json"
        if not video.is_file():
            entry["results"] = {"soul_offline": {"error": f"missing output {video.name}"}}
            entries.append(entry)
            flat_cases[case.id] = {"error": f"missing output {video.name}", "category": case.category}
            continue
        stamp = [video.stat().st_size, video.stat().st_mtime_ns, list(options.groups), repr(cfg)]
        if case.speaker_audio:  # only then, so caches of one-person cases stay valid
            stamp.append([[str(p), p.stat().st_mtime_ns] for p in case.speaker_audio])
        if cache_file.is_file() and not options.force:
            cached = json.loads(cache_file.read_text())
            if cached.get("stamp") == stamp:
                entries.append(cached["entry"])
                flat_cases[case.id] = cached["flat"]
                continue
        t0 = time.perf_counter()
        try:
            clip = M.load_clip(video, audio=None)
            if clip.audio.size == 0:  # a silent output is scored against the case's driving audio
                clip.audio = load_audio(case.audio, MODEL_SAMPLE_RATE, normalize=False).samples.astype(np.float32)
            speakers = [load_audio(p, MODEL_SAMPLE_RATE, normalize=False).samples for p in case.speaker_audio] \
                if "people" in options.groups else []
            reference = _image_array(case.image)
            if "analyzer" not in cache and FACE_GROUPS & set(options.groups):
                cache["analyzer"] = M._analyzer()
            offline = score_clip(clip, reference, groups=options.groups, analyzer=cache.get("analyzer"), long_case=case.long,
                                 curve_seconds=options.curve_seconds, speaker_audio=speakers)
            people = {k: offline.pop(k) for k in list(offline) if k.startswith("people")}
            groups = {"soul_offline": _clean({k: v for k, v in offline.items() if k != "long_term"})}
            if people:
                groups["soul_people"] = _clean(people)
            if "av_align" in options.groups:
                groups["av_align"] = {"av_align_score": groups["soul_offline"].get("av_align")}
            groups.update(_clean(_weighted_case(case, clip, reference, cfg, cache)))
            flat = {**groups["soul_offline"], **groups.get("soul_people", {}), **_clean(_flatten(groups)), "category": case.category, "long": case.long,
                    "seconds": time.perf_counter() - t0}
            if "long_term" in offline:
                flat["long_term"] = _clean(offline["long_term"])
        except InputError as err:
            groups = {"soul_offline": {"error": str(err)}}
            flat = {"error": str(err), "category": case.category}
        entry["results"] = groups
        entries.append(entry)
        flat_cases[case.id] = flat
        cache_file.write_text(json.dumps({"stamp": stamp, "entry": entry, "flat": flat}, indent=1))
    suite_metrics = _clean(_suite_fid_fvd(cases, outputs, cfg))
    result = {
        "version": SCORES_VERSION,
        "method": options.method or outputs.name,
        "suite": str(suite),
        "outputs": str(outputs),
        "cases": flat_cases,
        "summary": summarize({k: v for k, v in flat_cases.items() if "error" not in v}),
        "suite_metrics": suite_metrics,
        "skipped": skipped(cfg),
    }
    (out / "evaluation_results.json").write_text(json.dumps(entries, indent=2))
    (out / "scores.json").write_text(json.dumps(result, indent=2))
    return result
