"""Curation settings: one validated object, loaded from YAML, whose hash goes into every row.

Thresholds live in configuration, not code, because each dataset needs its own (see the public
pipelines summarised in docs/data.md); the config hash in the manifest says which ones made a row.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soul.errors import InputError
from soul.media.audio import MODEL_SAMPLE_RATE


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShotConfig(_Section):
    threshold: float = Field(27.0, gt=0, description="PySceneDetect ContentDetector threshold")
    min_clip_s: float = Field(2.0, gt=0)
    max_clip_s: float = Field(30.0, gt=0)
    analysis_width: int = Field(320, ge=64, description="frames are downscaled to this width for cut detection")


class QualityConfig(_Section):
    min_side: int = Field(256, ge=16, description="smaller frame side below this drops the clip")
    min_blur: float = Field(15.0, ge=0, description="variance of the Laplacian at 256 px height")
    min_highlight: float = Field(50.0, ge=0, le=255, description="median 99.9th-percentile luma; below is too dark")
    max_brightness: float = Field(245.0, ge=0, le=255)
    max_black_fraction: float = Field(0.5, ge=0, le=1)
    max_frozen_fraction: float = Field(0.8, ge=0, le=1)
    sample_fps: float = Field(5.0, gt=0)


class PeopleConfig(_Section):
    detect_max_side: int = Field(640, ge=64)
    detect_fps: float = Field(1.0, gt=0, description="face detection rate; landmarks run on every frame")
    min_presence: float = Field(0.5, gt=0, le=1, description="a face must be seen in this share of samples")
    portrait_min_face: float = Field(0.26, gt=0, lt=1, description="face height / frame height for portrait")
    upper_body_min_face: float = Field(0.1, gt=0, lt=1, description="face height / frame height for upper body")
    min_figure_height: float = Field(0.5, gt=0, le=1, description="moving-figure height for full body without a face")


class SpeechConfig(_Section):
    threshold: float = Field(0.5, gt=0, lt=1, description="silero-vad speech probability threshold")
    min_speech_ratio: float = Field(0.0, ge=0, le=1, description="clips below this are dropped (0 keeps all)")


class AudioQualityConfig(_Section):
    dnsmos: bool = Field(True, description="score DNSMOS when speechmos (+ librosa, onnxruntime) is installed")


class SyncConfig(_Section):
    max_offset: int = Field(12, ge=1, description="frames searched either side (a peak at the edge is no estimate)")
    min_speech_ratio: float = Field(0.2, ge=0, le=1, description="below this there is too little speech to sync")
    shift_min_conf: float = Field(
        2.1, ge=0, description="lmsync confidence (Fisher z) needed before an offset is acted on; 2.1 = soul.analysis.lipsync.MIN_CONFIDENCE, "
        "chosen on tuning clips as the 95th percentile of foreign-audio pairs")
    min_abs_offset: int = Field(2, ge=0, description="offsets below this are left alone: lmsync is tested to ±1 frame on clips recorded in sync")
    max_abs_offset: int = Field(6, ge=0, description="offsets beyond this are not corrected (and drop if drop_out_of_sync)")
    drop_out_of_sync: bool = False
    syncnet_weights: str | None = Field(None, description="path of syncnet_v2.model")


class MotionConfig(_Section):
    width: int = Field(160, ge=32)
    sample_fps: float = Field(5.0, gt=0)
    min_motion: float = Field(0.0, ge=0, description="mean flow, frame widths per second; below drops as static")
    max_motion: float = Field(0.5, gt=0, description="above drops as over-moving")


class CaptionConfig(_Section):
    vlm_model: str | None = Field(None, description="local path of a transformers image-text-to-text model")
    prompt: str = "Describe the person, the framing, the setting and what they are doing, in one sentence."
    max_new_tokens: int = Field(60, ge=1)


class OutputConfig(_Section):
    shard_max_samples: int = Field(500, ge=1)
    shard_max_bytes: int = Field(1 << 30, ge=1 << 20)
    audio_sample_rate: int = Field(MODEL_SAMPLE_RATE, ge=8000)
    video_crf: int = Field(20, ge=0, le=51)
    video_preset: str = "veryfast"
    copy_video: bool = Field(
        True,
        description="H.264 clips are copied packet for packet (exact frames; an MP4 edit list hides the lead-in "
        "from the previous keyframe); false re-encodes every clip (for readers that ignore edit lists, e.g. decord)",
    )


class CurationConfig(_Section):
    shots: ShotConfig = ShotConfig()
    quality: QualityConfig = QualityConfig()
    people: PeopleConfig = PeopleConfig()
    speech: SpeechConfig = SpeechConfig()
    audio_quality: AudioQualityConfig = AudioQualityConfig()
    sync: SyncConfig = SyncConfig()
    motion: MotionConfig = MotionConfig()
    caption: CaptionConfig = CaptionConfig()
    output: OutputConfig = OutputConfig()

    def digest(self) -> str:
        """Short hash of every setting: rows made under different settings are told apart."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:12]


def load_config(path: str | Path | None = None) -> CurationConfig:
    """Defaults, overridden by the YAML file at `path` (any subset of sections and keys)."""
    if path is None:
        return CurationConfig()
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "config file not found", "give a YAML file like configs/data/default.yaml")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(p, f"is not valid YAML ({err.__class__.__name__})", "fix the syntax") from None
    if not isinstance(data, dict):
        raise InputError(p, "must hold a mapping of sections", "see configs/data/default.yaml")
    try:
        cfg = CurationConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise InputError(p, f"{where}: {first['msg']}", "see configs/data/default.yaml") from None
    if cfg.sync.syncnet_weights is not None:
        w = Path(cfg.sync.syncnet_weights)
        if not w.is_file():
            raise InputError(w, "SyncNet weights not found", "give the path of syncnet_v2.model or remove sync.syncnet_weights")
        raise InputError(w, "SyncNet scoring is not part of this version of soul data yet", "remove sync.syncnet_weights; lmsync fields are recorded")
    return cfg
