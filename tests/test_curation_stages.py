"""Single stages on small synthetic inputs: the audio shift that cancels a measured offset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from soul.analysis import shift_audio
from soul.curation.config import CurationConfig
from soul.curation.stages import _write_clip_files, stage_motion, stage_quality, ClipContext
from soul.media.audio import Audio
from soul.media.video import read_video, write_video


def _clip(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(50, 64, 64, 3), dtype=np.uint8)
    audio = (rng.standard_normal(32000) * 0.1).astype(np.float32)
    return write_video(tmp_path / "src.mp4", frames, 25, audio=Audio(audio, 16000)), audio


def test_written_audio_is_shifted_by_the_measured_offset(tmp_path: Path) -> None:
    src, audio = _clip(tmp_path)
    reader = read_video(src)
    rec = {"clip_id": "c0", "fps": 25.0, "start_frame": 10, "end_frame": 40, "audio_shift_frames": 3}
    part = audio[6400:6400 + 30 * 640]
    _write_clip_files(rec, reader, part, CurationConfig(), tmp_path / "out")
    wav, sr = sf.read(str(tmp_path / "out" / rec["audio_file"]), dtype="float32")
    assert sr == 16000 and wav.shape == part.shape
    assert np.allclose(wav, shift_audio(part, 16000, 25.0, 3), atol=1e-3)
    assert np.all(wav[: 3 * 640] == 0)  # delayed by 3 frames: silence first
    clip = read_video(tmp_path / "out" / rec["video_file"])
    assert clip.num_frames == 30 and clip.has_audio


def test_quality_and_motion_on_noise_and_still_frames(tmp_path: Path) -> None:
    cfg = CurationConfig()
    rng = np.random.default_rng(1)
    noise = [rng.integers(0, 255, size=(72, 128, 3), dtype=np.uint8) for _ in range(20)]
    ctx = ClipContext(frames=noise, fps=10.0, audio=None, sample_rate=16000, analyzer=None)  # type: ignore[arg-type]
    rec = {"width": 1280, "height": 720}
    stage_quality(ctx, rec, cfg)
    assert rec.get("kept") is None and rec["frozen_fraction"] == 0.0 and rec["black_fraction"] == 0.0
    still = [np.full((72, 128, 3), 120, dtype=np.uint8)] * 20
    rec = {"width": 1280, "height": 720}
    stage_quality(ClipContext(frames=still, fps=10.0, audio=None, sample_rate=16000, analyzer=None), rec, cfg)  # type: ignore[arg-type]
    assert rec["kept"] is False and rec["drop_reason"].startswith("frozen")
    black = [np.zeros((72, 128, 3), dtype=np.uint8)] * 20
    rec = {"width": 1280, "height": 720}
    stage_quality(ClipContext(frames=black, fps=10.0, audio=None, sample_rate=16000, analyzer=None), rec, cfg)  # type: ignore[arg-type]
    assert rec["drop_reason"].startswith("black")
    rec = {"width": 200, "height": 100}
    stage_quality(ctx, rec, cfg)
    assert rec["drop_reason"].startswith("resolution too low")
    import cv2

    texture = cv2.GaussianBlur(rng.integers(0, 255, size=(72, 128, 3), dtype=np.uint8), (5, 5), 1.5)
    moving = [np.roll(texture, 2 * i, axis=1) for i in range(20)]  # 2 px/frame at 10 fps ~ 0.16 widths/s
    rec = {}
    stage_motion(ClipContext(frames=moving, fps=10.0, audio=None, sample_rate=16000, analyzer=None), rec, cfg)  # type: ignore[arg-type]
    rec_still: dict = {}
    stage_motion(ClipContext(frames=still, fps=10.0, audio=None, sample_rate=16000, analyzer=None), rec_still, cfg)  # type: ignore[arg-type]
    assert 0.08 < rec["motion_mean"] < 0.3 and rec_still["motion_mean"] < 0.01


def test_a_failing_stage_drops_the_clip_not_the_run(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import soul.curation.stages as stages

    src, _ = _clip(tmp_path)
    plan = stages.plan_source(src, CurationConfig())
    assert len(plan) == 1 and plan[0]["kept"]

    def broken(ctx, rec, cfg) -> None:  # noqa: ANN001
        raise ValueError("boom")

    monkeypatch.setattr(stages, "CLIP_STAGES", (("quality", broken),))
    rec = stages.annotate_clip(plan[0], CurationConfig(), tmp_path / "out")
    assert rec["kept"] is False and rec["drop_stage"] == "quality" and rec["drop_reason"] == "error: ValueError: boom"
    assert (tmp_path / "out" / "records" / f"{rec['clip_id']}.json").is_file()


def test_sync_stage_shifts_only_confident_offsets_beyond_the_precision(media: Path) -> None:
    """talking_face_1 (recorded in sync) is left alone; with its audio 5 frames early the stage
    delays it by what it measured; below the confidence threshold nothing moves."""
    from soul.analysis import FaceAnalyzer, face_tracks
    from soul.curation.stages import stage_sync

    reader = read_video(media / "clips" / "talking_face_1.mp4")
    frames = list(reader.frames())
    audio = reader.read_audio(16000).samples
    analyzer = FaceAnalyzer(detect_max_side=480)
    tracks = face_tracks(frames, analyzer, detect_every=5)

    def sync(samples: np.ndarray, cfg: CurationConfig = CurationConfig()) -> dict:
        rec = {"speech_ratio": 0.6}
        stage_sync(ClipContext(frames=frames, fps=reader.fps, audio=samples, sample_rate=16000, analyzer=analyzer, tracks=tracks), rec, cfg)
        return rec

    as_recorded = sync(audio)
    assert abs(as_recorded["lmsync_offset"]) <= 1 and as_recorded["audio_shift_frames"] == 0
    assert as_recorded["lmsync_conf"] >= 2.1 and "min_abs_offset" in as_recorded["lmsync_reason"]
    early = shift_audio(audio, 16000, reader.fps, -5)
    fixed = sync(early)
    assert fixed["lmsync_offset"] in (4, 5, 6) and fixed["audio_shift_frames"] == fixed["lmsync_offset"]
    strict = CurationConfig.model_validate({"sync": {"shift_min_conf": 50.0}})
    unsure = sync(early, strict)
    assert unsure["lmsync_offset"] == fixed["lmsync_offset"] and unsure["audio_shift_frames"] == 0
    assert "shift_min_conf" in unsure["lmsync_reason"]
