"""The curation stages. Each is a small function over one clip that fills its fields or drops it.

`plan_source` probes a raw video and splits it into shots (one record per clip, plus dropped
records for what cannot be used); `annotate_clip` runs the per-clip stages in order, stopping at
the first drop, and writes the clip's files and its record. Both are plain functions of their
inputs so the local process pool and Ray Data run exactly the same code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soul.analysis import FaceAnalyzer, FaceTrack, SyncEstimate, face_tracks, lmsync, mouth_series
from soul.curation.config import CurationConfig
from soul.curation.decode import ANALYSIS_MAX_SIDE, analysis_frames, shot_frames
from soul.curation.records import PIPELINE_VERSION, drop, new_record
from soul.errors import InputError

if TYPE_CHECKING:
    from soul.media.video import VideoReader


# Seconds spent per step in this process (decode, each stage, write), summed over its clips.
# Timings never go into rows (rows must not depend on the machine); the throughput benchmark
# reads them to print its per-stage table.
STAGE_SECONDS: defaultdict[str, float] = defaultdict(float)
CLIP_WRITES: Counter[str] = Counter()  # kept clips copied packet for packet vs re-encoded


# ---------------------------------------------------------------- helpers


def source_fingerprint(path: Path) -> tuple[str, int]:
    """Stable id of a source: its resolved path, size and first MiB, so an edited file is new work."""
    size = path.stat().st_size if path.is_file() else -1
    h = hashlib.sha1(str(path.resolve()).encode())
    h.update(str(size).encode())
    if path.is_file():
        with path.open("rb") as f:
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16], size


def _gray(frame: np.ndarray, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Luma of an RGB or already-grey frame, optionally resized to a height or width."""
    import cv2

    g = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    if height is not None and h != height:
        g = cv2.resize(g, (max(2, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
    elif width is not None and w != width:
        g = cv2.resize(g, (width, max(2, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return g


def _sample_indices(n: int, fps: float, rate: float) -> list[int]:
    step = max(1, int(round(fps / rate)))
    return list(range(0, n, step))


def write_json_atomic(path: Path, data: dict) -> None:
    """Write then rename: a killed process leaves either the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True, default=_jsonable))
    os.replace(tmp, path)


def _jsonable(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


@lru_cache(maxsize=4)
def _analyzer(detect_max_side: int) -> FaceAnalyzer:
    return FaceAnalyzer(detect_max_side=detect_max_side)


@lru_cache(maxsize=1)
def _vad_model():  # noqa: ANN202 - a torch module
    import torch
    from silero_vad import load_silero_vad

    torch.set_num_threads(1)  # workers share the cores; one thread each is fastest overall
    return load_silero_vad()


# ---------------------------------------------------------------- probe + shots


def plan_source(path: str | Path, cfg: CurationConfig) -> list[dict]:
    """Probe one raw video and split it into clips of `min_clip_s`..`max_clip_s` at shot cuts.

    An unreadable file is not an error of the run: it becomes one dropped record saying why.
    """
    t = time.perf_counter()
    try:
        return _plan_source(Path(path).expanduser(), cfg)
    finally:
        STAGE_SECONDS["probe+shots"] += time.perf_counter() - t


def _plan_source(p: Path, cfg: CurationConfig) -> list[dict]:
    from scenedetect import ContentDetector
    from scenedetect.common import FrameTimecode

    from soul.media.video import read_video

    source_id, size = source_fingerprint(p)
    base = dict(
        source_id=source_id,
        source_path=str(p.resolve()),
        source_bytes=size,
        pipeline_version=PIPELINE_VERSION,
        config_hash=cfg.digest(),
    )
    whole = lambda: new_record(clip_id=f"{source_id}-source", clip_index=-1, **base)  # noqa: E731
    try:
        reader = read_video(p)
    except InputError as err:
        return [drop(whole(), "probe", f"undecodable: {err.problem}")]
    fps = reader.fps
    try:
        declared = reader.num_frames
    except InputError as err:
        return [drop(whole(), "probe", f"undecodable: {err.problem}")]
    base.update(fps=fps, width=reader.width, height=reader.height, has_audio=reader.has_audio, audio_sample_rate=reader.audio_sample_rate)
    detector = ContentDetector(threshold=cfg.shots.threshold, min_scene_len=max(1, int(round(fps * 0.5))))
    cuts: list[int] = []
    count = 0
    try:
        for count, small in enumerate(shot_frames(reader, cfg.shots.analysis_width), start=1):
            found = detector.process_frame(FrameTimecode(count - 1, fps), small)
            cuts += [int(tc.frame_num) for tc in found if int(tc.frame_num) > 0]
    except InputError as err:
        if count == 0:
            return [drop(whole(), "probe", f"undecodable: {err.problem}")]
        # Decodable up to a corrupt packet: keep what decoded, the rest is lost anyway.
    if count == 0:
        return [drop(whole(), "probe", "undecodable: no video frame could be decoded")]
    if declared and count < declared - max(2, 0.02 * declared):
        return [drop(whole(), "probe", f"truncated: decoded {count} of {declared} declared frames")]
    base["source_duration_s"] = count / fps
    bounds = [0] + sorted(set(c for c in cuts if 0 < c < count)) + [count]
    records = []
    index = 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        shot_len = (b - a) / fps
        if shot_len < cfg.shots.min_clip_s:
            rec = new_record(clip_id=f"{source_id}-{a:07d}-{b:07d}", clip_index=index, start_frame=a, end_frame=b, start_s=a / fps, end_s=b / fps, duration_s=shot_len, **base)
            records.append(drop(rec, "shots", f"shot too short ({shot_len:.2f} s < {cfg.shots.min_clip_s} s)"))
            index += 1
            continue
        parts = max(1, math.ceil(shot_len / cfg.shots.max_clip_s))
        edges = [a + round(i * (b - a) / parts) for i in range(parts + 1)]
        for s, e in zip(edges[:-1], edges[1:]):
            records.append(
                new_record(clip_id=f"{source_id}-{s:07d}-{e:07d}", clip_index=index, start_frame=s, end_frame=e, start_s=s / fps, end_s=e / fps, duration_s=(e - s) / fps, kept=True, **base)
            )
            index += 1
    return records


# ---------------------------------------------------------------- per-clip stages


@dataclass
class ClipContext:
    """What the stages of one clip share: its frames decoded once, audio, face tracks.

    `frames` are the analysis frames: grey, at most `ANALYSIS_MAX_SIDE` px, every frame of the
    clip (RGB frames work too). `reader` and `start_frame` reach the full-size picture for the
    one stage that needs colour (a VLM caption).
    """

    frames: list[np.ndarray]
    fps: float
    audio: np.ndarray | None
    sample_rate: int
    analyzer: FaceAnalyzer
    tracks: list[FaceTrack] = field(default_factory=list)
    reader: VideoReader | None = None
    start_frame: int = 0


def stage_quality(ctx: ClipContext, rec: dict, cfg: CurationConfig) -> None:
    """Resolution, blur, brightness, black and frozen frames, on frames sampled at `sample_fps`."""
    q = cfg.quality
    if min(rec["width"], rec["height"]) < q.min_side:
        drop(rec, "quality", f"resolution too low ({rec['width']}x{rec['height']}, smaller side < {q.min_side})")
        return
    import cv2

    grays = [_gray(ctx.frames[i], height=256) for i in _sample_indices(len(ctx.frames), ctx.fps, q.sample_fps)]
    rec["blur"] = float(np.median([cv2.Laplacian(g, cv2.CV_64F).var() for g in grays]))
    rec["brightness"] = float(np.mean([g.mean() for g in grays]))
    # Darkness is judged on the highlights (99.9th percentile), not the mean: a bright figure on a
    # black stage is well exposed, an underexposed room has no highlights at all.
    highlights = [float(np.percentile(g, 99.9)) for g in grays]
    rec["highlight"] = float(np.median(highlights))
    rec["black_fraction"] = float(np.mean([h < 20 for h in highlights]))
    diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() for a, b in zip(grays[:-1], grays[1:])]
    rec["frozen_fraction"] = float(np.mean([d < 0.3 for d in diffs])) if diffs else 0.0
    if rec["black_fraction"] > q.max_black_fraction:
        drop(rec, "quality", f"black frames ({rec['black_fraction']:.0%} of samples)")
    elif rec["frozen_fraction"] > q.max_frozen_fraction:
        drop(rec, "quality", f"frozen frames ({rec['frozen_fraction']:.0%} of samples)")
    elif rec["blur"] < q.min_blur:
        drop(rec, "quality", f"too blurry (Laplacian variance {rec['blur']:.1f} < {q.min_blur})")
    elif rec["highlight"] < q.min_highlight:
        drop(rec, "quality", f"too dark (highlights at luma {rec['highlight']:.0f} < {q.min_highlight:.0f})")
    elif rec["brightness"] > q.max_brightness:
        drop(rec, "quality", f"too bright (mean luma {rec['brightness']:.1f} > {q.max_brightness})")


def _figure_height(frames: list[np.ndarray], fps: float) -> float:
    """Height (share of the frame) of what moves against the clip's median background.

    The fallback evidence of a person when no face is visible (backs, far shots, rendered pose
    figures): tall moving foreground spanning most of the frame is a full body.
    """
    idx = _sample_indices(len(frames), fps, 4.0)
    grays = np.stack([_gray(frames[i], width=160).astype(np.int16) for i in idx])
    background = np.median(grays, axis=0)
    heights = []
    for g in grays:
        ys = np.nonzero(np.abs(g - background) > 25)[0]
        if ys.size < 20:
            heights.append(0.0)
            continue
        lo, hi = np.percentile(ys, [1, 99])
        heights.append((hi - lo) / g.shape[0])
    return float(np.median(heights)) if heights else 0.0


def stage_people(ctx: ClipContext, rec: dict, cfg: CurationConfig) -> None:
    """Face tracks → count and sizes → category; a moving full figure when no face is found."""
    pc = cfg.people
    every = max(1, int(round(ctx.fps / pc.detect_fps)))
    ctx.tracks = face_tracks(ctx.frames, ctx.analyzer, detect_every=every, min_presence=pc.min_presence)
    frame_h = ctx.frames[0].shape[0]
    rec["num_faces"] = len(ctx.tracks)
    rec["face_heights_px"] = [round(t.median_height * rec["height"] / frame_h, 1) for t in ctx.tracks]
    if ctx.tracks:
        ratio = ctx.tracks[0].median_height / frame_h
        rec["face_height_ratio"] = float(ratio)
        rec["person_evidence"] = "face"
        if len(ctx.tracks) >= 2:
            rec["category"] = "multi_person"
        elif ratio >= pc.portrait_min_face:
            rec["category"] = "portrait"
        elif ratio >= pc.upper_body_min_face:
            rec["category"] = "upper_body"
        else:
            rec["category"] = "full_body"
        return
    rec["figure_height_ratio"] = fig = _figure_height(ctx.frames, ctx.fps)
    if fig >= pc.min_figure_height:
        rec["person_evidence"] = "moving_figure"
        rec["category"] = "full_body"
        return
    rec["person_evidence"] = "none"
    drop(rec, "people", f"no person found (no face; moving figure {fig:.0%} of frame height < {pc.min_figure_height:.0%})")


def stage_speech(ctx: ClipContext, rec: dict, cfg: CurationConfig) -> None:
    """Share of the clip that silero-vad calls speech."""
    if ctx.audio is None:
        rec["speech_ratio"], rec["has_speech"] = 0.0, False
    else:
        import torch
        from silero_vad import get_speech_timestamps

        stamps = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(ctx.audio, dtype=np.float32)), _vad_model(), threshold=cfg.speech.threshold, sampling_rate=ctx.sample_rate)
        speech = sum(s["end"] - s["start"] for s in stamps)
        rec["speech_ratio"] = float(min(1.0, speech / max(1, len(ctx.audio))))
        rec["has_speech"] = bool(stamps)
    if rec["speech_ratio"] < cfg.speech.min_speech_ratio:
        drop(rec, "speech", f"too little speech ({rec['speech_ratio']:.0%} < {cfg.speech.min_speech_ratio:.0%})")


def stage_audio_quality(ctx: ClipContext, rec: dict, cfg: CurationConfig) -> None:
    """DNSMOS (speechmos) when that package is installed; otherwise say so in the row."""
    if ctx.audio is None:
        rec["audio_quality_reason"] = "no audio track"
        return
    if not cfg.audio_quality.dnsmos:
        rec["audio_quality_reason"] = "DNSMOS disabled (audio_quality.dnsmos: false)"
        return
    try:
        from speechmos import dnsmos  # noqa: F401 - the models and features come from here
    except ImportError as err:  # speechmos also needs librosa and onnxruntime
        rec["audio_quality_reason"] = f"speechmos not installed ({err.name or 'import failed'})"
        return
    from soul.curation.dnsmos import dnsmos_scores

    try:
        scores = dnsmos_scores(ctx.audio, ctx.sample_rate)
    except ValueError as err:
        rec["audio_quality_reason"] = f"DNSMOS failed: {err}"
        return
    keys = ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")
    rec["dnsmos_ovrl"], rec["dnsmos_sig"], rec["dnsmos_bak"], rec["dnsmos_p808"] = (round(float(scores[k]), 6) for k in keys)


def stage_sync(ctx: ClipContext, rec: dict, cfg: CurationConfig) -> None:
    """lmsync offset/confidence of the best-synced face; the audio shift that cancels it.

    SyncNet fields stay null with their reason: its weights are never in a package.
    """
    sc = cfg.sync
    rec["syncnet_reason"] = "no syncnet_v2.model weights supplied (sync.syncnet_weights)"
    rec["audio_shift_frames"] = 0
    if ctx.audio is None:
        rec["lmsync_reason"] = "no audio track"
        return
    if (rec["speech_ratio"] or 0.0) < sc.min_speech_ratio:
        rec["lmsync_reason"] = f"too little speech to sync ({rec['speech_ratio']:.0%})"
        return
    if not ctx.tracks:
        rec["lmsync_reason"] = "no face to sync"
        return
    n = len(ctx.frames)
    max_offset = min(sc.max_offset, (n - 8) // 4)  # what the clip's length allows (lipsync.min_frames)
    if max_offset < 2:
        rec["lmsync_reason"] = f"clip too short to sync ({n} frames)"
        return
    best: tuple[SyncEstimate, int] | None = None
    for face, track in enumerate(ctx.tracks[:4]):
        est = lmsync(mouth_series(ctx.frames, ctx.analyzer, track), ctx.audio, ctx.sample_rate, ctx.fps, max_offset=max_offset)
        if best is None or est.confidence > best[0].confidence:
            best = (est, face)
    assert best is not None
    est, rec["speaker_face"] = best
    rec["lmsync_offset"], rec["lmsync_conf"] = est.offset, round(est.confidence, 6)
    if est.offset is None:
        rec["lmsync_reason"] = est.reason
        return
    if not est.confident(sc.shift_min_conf):
        rec["lmsync_reason"] = f"confidence {est.confidence:.2f} < sync.shift_min_conf {sc.shift_min_conf}: offset not acted on"
    elif abs(est.offset) < sc.min_abs_offset:
        rec["lmsync_reason"] = f"|offset| < sync.min_abs_offset {sc.min_abs_offset}: within the estimator's precision, left alone"
    elif abs(est.offset) <= sc.max_abs_offset:
        rec["audio_shift_frames"] = est.offset
    elif sc.drop_out_of_sync:
        drop(rec, "sync", f"out of sync (lmsync offset {est.offset} frames, |offset| > {sc.max_abs_offset})")


def stage_motion(ctx: ClipContext, rec: dict, cfg: CurationConfig) -> None:
    """Mean Farneback optical-flow speed in frame widths per second (static vs over-moving)."""
    import cv2

    mc = cfg.motion
    speeds = []
    for i in _sample_indices(len(ctx.frames) - 1, ctx.fps, mc.sample_fps):
        a, b = _gray(ctx.frames[i], width=mc.width), _gray(ctx.frames[i + 1], width=mc.width)
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        flow = np.nan_to_num(flow)
        speeds.append(float(np.linalg.norm(flow, axis=2).mean()) * ctx.fps / mc.width)
    rec["motion_mean"] = float(np.mean(speeds)) if speeds else 0.0
    rec["motion_p90"] = float(np.percentile(speeds, 90)) if speeds else 0.0
    if rec["motion_mean"] < mc.min_motion:
        drop(rec, "motion", f"static (motion {rec['motion_mean']:.4f} < {mc.min_motion})")
    elif rec["motion_mean"] > mc.max_motion:
        drop(rec, "motion", f"too much motion ({rec['motion_mean']:.3f} > {mc.max_motion} frame widths/s)")


def structured_caption(rec: dict) -> str:
    """A caption assembled from the annotations, for when no VLM is configured."""
    framing = {"portrait": "A head-and-shoulders portrait", "upper_body": "An upper-body shot", "full_body": "A full-body shot", "multi_person": "A shot"}
    who = f"of {rec['num_faces']} people" if rec.get("category") == "multi_person" else "of one person"
    parts = [f"{framing.get(rec.get('category') or '', 'A shot')} {who}"]
    details = []
    ratio = rec.get("speech_ratio") or 0.0
    parts.append("speaking" if ratio >= 0.5 else "speaking briefly" if ratio > 0.05 else "without speech" if rec.get("has_audio") else "with no audio")
    motion = rec.get("motion_mean") or 0.0
    details.append("little motion" if motion < 0.02 else "moderate motion" if motion < 0.1 else "a lot of motion")
    light = rec.get("brightness") or 0.0
    if light < 50:
        details.append("a dark background" if (rec.get("highlight") or 0) > 80 else "dim light")
    elif light > 180:
        details.append("bright light")
    return " ".join(parts) + ", with " + " and ".join(details) + f"; {rec['duration_s']:.1f} s."


@lru_cache(maxsize=1)
def _vlm(path: str):  # noqa: ANN202 - a transformers pipeline
    from transformers import pipeline

    return pipeline("image-text-to-text", model=path, device="cpu")


def stage_caption(ctx: ClipContext, rec: dict, cfg: CurationConfig) -> None:
    """VLM caption of the middle frame when a local model is configured, else a structured one."""
    cc = cfg.caption
    if cc.vlm_model and Path(cc.vlm_model).is_dir():
        from PIL import Image

        middle = len(ctx.frames) // 2
        if ctx.reader is not None:  # the analysis frames are grey: read the middle one in colour
            image = Image.fromarray(next(ctx.reader.frames(ctx.start_frame + middle, ctx.start_frame + middle + 1)))
        else:
            image = Image.fromarray(ctx.frames[middle])
        messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": cc.prompt}]}]
        out = _vlm(cc.vlm_model)(text=messages, max_new_tokens=cc.max_new_tokens, return_full_text=False)
        rec["caption"] = str(out[0]["generated_text"]).strip()
        rec["caption_source"] = f"vlm:{Path(cc.vlm_model).name}"
        return
    rec["caption"] = structured_caption(rec)
    rec["caption_source"] = "structured" if not cc.vlm_model else f"structured (VLM weights not found at {cc.vlm_model})"


CLIP_STAGES: tuple[tuple[str, Callable[[ClipContext, dict, CurationConfig], None]], ...] = (
    ("quality", stage_quality),
    ("people", stage_people),
    ("speech", stage_speech),
    ("audio_quality", stage_audio_quality),
    ("sync", stage_sync),
    ("motion", stage_motion),
    ("caption", stage_caption),
)


# ---------------------------------------------------------------- one clip, end to end


def record_path(out: Path, clip_id: str) -> Path:
    return out / "records" / f"{clip_id}.json"


def annotate_clip(plan: dict, cfg: CurationConfig, out: str | Path) -> dict:
    """Run every stage on one planned clip, write its files (if kept) and its record; return it.

    The record is written last and atomically, so its presence means the clip is finished;
    a clip whose record exists is returned as is (this is what makes re-runs skip work).
    """
    out = Path(out)
    done = record_path(out, plan["clip_id"])
    if done.is_file():
        return json.loads(done.read_text())
    rec = dict(plan)
    if rec.get("kept"):
        try:
            _run_stages(rec, cfg, out)
        except InputError as err:  # a clip whose data turns out unreadable mid-way
            drop(rec, "decode", f"undecodable: {err.problem}")
    if rec.get("kept") is None:
        rec["kept"] = False
    done.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(done, rec)
    return rec


def _run_stages(rec: dict, cfg: CurationConfig, out: Path) -> None:
    from soul.media.video import read_video

    t = time.perf_counter()
    reader = read_video(rec["source_path"])
    a, b = rec["start_frame"], rec["end_frame"]
    frames = analysis_frames(reader, a, b, ANALYSIS_MAX_SIDE)
    STAGE_SECONDS["decode"] += time.perf_counter() - t
    t = time.perf_counter()
    sr = cfg.output.audio_sample_rate
    audio = clip_audio(rec["source_path"], rec["start_s"], rec["end_s"], sr) if reader.has_audio else None
    STAGE_SECONDS["audio"] += time.perf_counter() - t
    ctx = ClipContext(frames=frames, fps=rec["fps"], audio=audio, sample_rate=sr, analyzer=_analyzer(cfg.people.detect_max_side), reader=reader, start_frame=a)
    for name, stage in CLIP_STAGES:
        t = time.perf_counter()
        try:
            stage(ctx, rec, cfg)
        except InputError:
            raise
        except Exception as err:  # noqa: BLE001 - one odd clip must not stop a million-clip run
            # The row says which stage failed and how, so `soul data inspect` shows it.
            drop(rec, name, f"error: {type(err).__name__}: {err}")
        finally:
            STAGE_SECONDS[name] += time.perf_counter() - t
        if rec.get("kept") is False:
            return
    t = time.perf_counter()
    _write_clip_files(rec, reader, audio, cfg, out)
    STAGE_SECONDS["write"] += time.perf_counter() - t


def clip_audio(path: str, start_s: float, end_s: float, sample_rate: int) -> np.ndarray:
    """A clip's stretch of its source's sound, mono, read by seeking (cost independent of where it lies)."""
    from soul.media.audio import read_audio_range

    return read_audio_range(path, start_s, end_s, sample_rate).samples


def _write_clip_files(rec: dict, reader: VideoReader, audio: np.ndarray | None, cfg: CurationConfig, out: Path) -> None:
    """The clip's MP4 (audio shifted to cancel the measured offset) and its 16 kHz WAV.

    An H.264 clip is copied packet for packet (`soul.media.video.copy_clip`): exact source frames,
    no second generation loss, and ~100x cheaper than re-encoding 720p. Where B-frames do not let
    it end exactly at ``end_frame`` it ends up to 3 frames earlier, and the record says so
    (``end_frame``, ``end_s``, ``duration_s``, ``trimmed_frames``). Anything else is re-encoded.
    """
    import soundfile as sf

    from soul.analysis import shift_audio
    from soul.media.audio import Audio
    from soul.media.video import copy_clip

    clips = out / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    sr = cfg.output.audio_sample_rate
    fixed = None
    if audio is not None:
        fixed = shift_audio(audio, sr, rec["fps"], rec.get("audio_shift_frames") or 0).astype(np.float32)
    video_path = clips / f"{rec['clip_id']}.mp4"
    end = None
    if cfg.output.copy_video:
        end = copy_clip(reader, rec["start_frame"], rec["end_frame"], video_path, audio=Audio(fixed, sr) if fixed is not None else None)
    if end is None:
        _encode_clip(rec, reader, fixed, cfg, video_path)
    else:
        CLIP_WRITES["copied"] += 1
        rec["trimmed_frames"] = rec["end_frame"] - end
        if end != rec["end_frame"]:
            rec["end_frame"], rec["end_s"] = end, end / rec["fps"]
            rec["duration_s"] = (end - rec["start_frame"]) / rec["fps"]
            if fixed is not None:
                fixed = fixed[: int(round(rec["duration_s"] * sr))]
    rec["video_file"] = f"clips/{video_path.name}"
    if fixed is not None:
        wav = clips / f"{rec['clip_id']}.wav"
        tmp = wav.with_name(f".{wav.stem}.tmp-{os.getpid()}.wav")
        sf.write(str(tmp), fixed, sr, subtype="PCM_16")
        os.replace(tmp, wav)
        rec["audio_file"] = f"clips/{wav.name}"


def _encode_clip(rec: dict, reader: VideoReader, fixed: np.ndarray | None, cfg: CurationConfig, video_path: Path) -> None:
    """Re-encode a clip that cannot be copied: seeking reads, decoder frames straight to x264."""
    from soul.media.audio import Audio
    from soul.media.video import VideoWriter

    sr = cfg.output.audio_sample_rate
    with VideoWriter(video_path, reader.fps_fraction, audio=Audio(fixed, sr) if fixed is not None else None, crf=cfg.output.video_crf, preset=cfg.output.video_preset) as writer:
        for _, frame in reader.decoded(rec["start_frame"], rec["end_frame"]):
            writer.write_decoded(frame)
    CLIP_WRITES["re-encoded"] += 1
