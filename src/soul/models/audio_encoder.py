"""Speech features for Soul's audio layers: wav2vec2 hidden states aligned to the latent frames.

The audio layers read *all* hidden states of a wav2vec2-family encoder (the embedding output and
every transformer layer) because which depth carries lip-relevant information differs between
checkpoints; the projector learns the mix. This module turns a 16 kHz mono track into
``[F_lat, W, L, D]``: for each latent frame of the video, a window of ``W`` video-rate feature
frames, each with ``L`` hidden states of width ``D``.

Time alignment (DESIGN 3.2) is by absolute time, never by index arithmetic between rates:

- wav2vec2 emits one feature frame per ``hop`` samples (320 at 16 kHz = 50 Hz, fixed by its conv
  strides); frame ``j`` is placed at the centre of its receptive field,
  ``(j * hop + (R - 1) / 2) / sample_rate`` seconds, ``R`` = 400 samples for the standard stack;
- video frame ``i`` is at ``i / fps`` seconds; features are linearly interpolated there;
- the Wan VAE is causal and 4x in time: latent 0 <-> video frame 0, latent ``k >= 1`` <-> video
  frames ``4k-3 .. 4k``. Each latent frame reads those frames plus ``context`` frames each side.

Long audio is encoded in overlapping segments so memory does not grow with the square of the
duration (self-attention over five minutes at 50 Hz would need gigabytes per layer); each
segment contributes only its core, and its context margins let the convolutions and the
convolutional position embedding see the same samples as a one-shot pass would. With a
layer-normed conv stack (``feat_extract_norm="layer"``: large and XLSR models, the tiny preset)
the embedding output is then exactly the one-shot result; a group-normed stack (base models)
normalises its first layer over the segment, and the transformer layers attend globally, so
those differ slightly (wav2vec2 was trained on utterances of well under a minute, so a 20 s view
is within what it knows).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import AutoModel, PreTrainedModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from soul.errors import InputError
from soul.media.audio import MODEL_SAMPLE_RATE

if TYPE_CHECKING:
    from soul.config import SoulConfig

logger = logging.getLogger(__name__)

SAMPLE_RATE = MODEL_SAMPLE_RATE
"""The rate every wav2vec2 checkpoint Soul supports was trained at."""

TEMPORAL_FACTOR = 4
"""Video frames per latent frame after the first (the Wan VAE's causal 4x time compression)."""


# ------------------------------------------------------------------------------ frame arithmetic


def frames_for_duration(duration_s: float, fps: float) -> int:
    """Frames to generate for ``duration_s`` seconds of audio: a ``4k+1`` count.

    The written video has ``video_frames_for_duration`` frames, so output length equals audio
    length to the frame; the model can only produce ``4k+1`` frames per chunk (the VAE is causal,
    4x in time), so generation rounds up to the grid and the writer drops the 0-3 extra frames.
    """
    frames = video_frames_for_duration(duration_s, fps)
    return TEMPORAL_FACTOR * math.ceil((frames - 1) / TEMPORAL_FACTOR) + 1


def video_frames_for_duration(duration_s: float, fps: float) -> int:
    """Frames of the written video: the audio length to the nearest frame, at least one."""
    if not (math.isfinite(duration_s) and duration_s > 0) or not (math.isfinite(fps) and fps > 0):
        raise InputError("duration", f"{duration_s} s at {fps} fps gives no frames", "give a positive audio duration and frame rate")
    return max(1, int(round(duration_s * fps)))


def latent_frame_windows(
    num_video_frames: int,
    context: int = 2,
    *,
    start: int = 0,
    total_frames: int | None = None,
) -> torch.Tensor:
    """Video-frame indices each latent frame reads: ``LongTensor [F_lat, 4 + 2 * context]``.

    ``F_lat = (T - 1) // 4 + 1``. Latent ``k >= 1`` covers video frames ``4k-3 .. 4k`` and reads
    ``4k-3-context .. 4k+context``. Latent 0 covers frame 0 alone; so that every latent frame has
    the same width (the projector is one MLP over a fixed window), it reads a window of the same
    width centred on frame 0, with frame 0 at position ``(W - 1) // 2``, e.g. ``-3 .. 4`` for
    ``W = 8``. Indices are clamped to the video, so the edges repeat the first or last frame.

    For a chunk of a longer video, ``start`` is the chunk's first absolute frame and
    ``total_frames`` the whole video's length: windows then cross chunk borders and read the
    neighbouring chunk's audio, as continuous speech requires.
    """
    if num_video_frames < 1 or (num_video_frames - 1) % TEMPORAL_FACTOR:
        raise InputError(
            f"num_video_frames {num_video_frames}",
            f"must be {TEMPORAL_FACTOR}k+1 (the VAE is causal, {TEMPORAL_FACTOR}x in time)",
            "round with frames_for_duration",
        )
    if context < 0:
        raise InputError("context", f"must be >= 0, got {context}", "use 2 (the default)")
    total = start + num_video_frames if total_frames is None else total_frames
    if start < 0 or total < start + num_video_frames:
        raise InputError("start/total_frames", f"chunk {start}..{start + num_video_frames - 1} is outside a video of {total} frames", "pass the whole video's frame count")
    latent_frames = (num_video_frames - 1) // TEMPORAL_FACTOR + 1
    width = TEMPORAL_FACTOR + 2 * context
    first = torch.arange(latent_frames) * TEMPORAL_FACTOR - (TEMPORAL_FACTOR - 1) - context
    first[0] = -((width - 1) // 2)
    windows = first[:, None] + torch.arange(width)[None, :] + start
    return windows.clamp_(0, total - 1).long()


def resample_to_video(
    features: torch.Tensor,
    num_video_frames: int,
    fps: float,
    *,
    feature_rate: float = 50.0,
    feature_offset: float = 0.0,
) -> torch.Tensor:
    """``[L, T_a, D]`` features at ``feature_rate`` -> ``[L, num_video_frames, D]`` at ``fps``.

    Feature frame ``j`` sits at ``feature_offset + j / feature_rate`` seconds and video frame ``i``
    at ``i / fps``; values are linearly interpolated between the two nearest feature frames, and
    held at the ends (past the last feature frame the audio has ended; callers pad the audio with
    silence when the video must run longer).
    """
    if features.ndim != 3 or features.shape[1] < 1:
        raise InputError("features", f"shape {tuple(features.shape)} is not [L, T, D] with T >= 1", "pass SoulAudioEncoder.encode output")
    if num_video_frames < 1 or not fps > 0 or not feature_rate > 0:
        raise InputError("resample_to_video", f"{num_video_frames} frames at {fps} fps from {feature_rate} Hz", "give positive frame counts and rates")
    num_feats = features.shape[1]
    times = torch.arange(num_video_frames, dtype=torch.float64) / fps
    pos = ((times - feature_offset) * feature_rate).clamp(0, num_feats - 1)
    lo = pos.floor().long().clamp(max=num_feats - 1)
    hi = (lo + 1).clamp(max=num_feats - 1)
    frac = (pos - lo).to(features.dtype if features.is_floating_point() else torch.float32)[None, :, None]
    frac = frac.to(features.device)
    return features[:, lo] * (1 - frac) + features[:, hi] * frac


def window_features(video_rate_features: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Gather ``[L, T, D]`` by ``windows [F_lat, W]`` into ``[F_lat, W, L, D]``."""
    if video_rate_features.ndim != 3 or windows.ndim != 2:
        raise InputError("window_features", f"features {tuple(video_rate_features.shape)} and windows {tuple(windows.shape)}", "pass [L, T, D] and [F_lat, W]")
    if windows.numel() and (int(windows.min()) < 0 or int(windows.max()) >= video_rate_features.shape[1]):
        raise InputError("windows", f"index outside 0..{video_rate_features.shape[1] - 1}", "build windows with latent_frame_windows for the same frame count")
    return video_rate_features.permute(1, 0, 2)[windows.to(video_rate_features.device)]


# --------------------------------------------------------------------------------- the encoder


def _check_samples(samples: np.ndarray, name: str = "audio") -> np.ndarray:
    arr = np.asarray(samples)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
        raise InputError(name, f"shape {arr.shape} dtype {arr.dtype}", "pass a non-empty 1-D float array of 16 kHz mono samples (soul.media.load_audio)")
    if not np.all(np.isfinite(arr)):
        raise InputError(name, "contains NaN or infinite samples", "fix or re-load the audio file")
    return arr.astype(np.float32, copy=False)


class SoulAudioEncoder:
    """A frozen wav2vec2-family encoder plus its feature extractor, in inference mode.

    ``segment_seconds`` is the core length encoded per forward pass and ``context_seconds`` the
    margin added on each side of it; ``context_frames`` is the default video-frame context of
    each latent frame's window (the preset's ``audio.context_frames``).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        feature_extractor: Wav2Vec2FeatureExtractor | None = None,
        *,
        context_frames: int = 2,
        segment_seconds: float = 20.0,
        context_seconds: float = 2.0,
    ) -> None:
        cfg = model.config
        if not hasattr(cfg, "conv_kernel") or not hasattr(cfg, "conv_stride"):
            raise InputError(type(model).__name__, "is not a wav2vec2-family speech encoder (no conv feature stack)", "use a wav2vec2 / HuBERT / WavLM checkpoint")
        if segment_seconds <= 0 or context_seconds < 0:
            raise InputError("segment_seconds/context_seconds", f"{segment_seconds}/{context_seconds}", "use a positive segment and a non-negative context")
        self.model = model.eval()
        self.feature_extractor = feature_extractor or Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=SAMPLE_RATE, do_normalize=True, return_attention_mask=False
        )
        if self.feature_extractor.sampling_rate != SAMPLE_RATE:
            raise InputError("feature extractor", f"expects {self.feature_extractor.sampling_rate} Hz", f"use a checkpoint trained at {SAMPLE_RATE} Hz")
        self.context_frames = int(context_frames)
        self.segment_seconds = float(segment_seconds)
        self.context_seconds = float(context_seconds)
        self.hop = int(np.prod(cfg.conv_stride))
        # Receptive field of one conv feature frame, in samples.
        field, jump = 1, 1
        for kernel, stride in zip(cfg.conv_kernel, cfg.conv_stride):
            field += (kernel - 1) * jump
            jump *= stride
        self.receptive_field = field

    # -------------------------------------------------------------------------------- building

    @classmethod
    def from_config(cls, config: Wav2Vec2Config | dict[str, Any], *, seed: int | None = None, **kwargs: Any) -> SoulAudioEncoder:
        """A randomly initialised ``Wav2Vec2Model`` (tests, the miniature world, random-frozen use)."""
        cfg = config if isinstance(config, Wav2Vec2Config) else Wav2Vec2Config(**config)
        if seed is None:
            model = Wav2Vec2Model(cfg)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = Wav2Vec2Model(cfg)
        return cls(model, **kwargs)

    @classmethod
    def build(cls, config: SoulConfig, **kwargs: Any) -> SoulAudioEncoder:
        """Random weights at the preset's size, with the preset's window context."""
        kwargs.setdefault("context_frames", config.audio.context_frames)
        return cls.from_config(dict(config.audio_encoder.config), **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path | None,
        config: SoulConfig | None = None,
        *,
        local_files_only: bool = True,
        torch_dtype: torch.dtype | str = "auto",
        **kwargs: Any,
    ) -> SoulAudioEncoder:
        """Load any wav2vec2-family checkpoint: a directory, or a hub id in the local cache.

        ``path_or_id=None`` means the preset's ``audio_encoder.hub_id``. The feature extractor
        comes from the checkpoint's ``preprocessor_config.json`` when it has one, else wav2vec2's
        standard one (16 kHz, zero-mean unit-variance input). ``local_files_only`` defaults to
        True because Soul never downloads at run time; ``soul download`` fetches the files.
        ``torch_dtype="auto"`` keeps the checkpoint's own dtype; features come out float32 anyway.
        """
        if config is not None:
            kwargs.setdefault("context_frames", config.audio.context_frames)
        source = path_or_id
        if source is None:
            source = config.audio_encoder.hub_id if config is not None else None
            if not source:
                raise InputError("audio encoder", "no checkpoint given and the preset names none", "pass a wav2vec2 directory or hub id, or use SoulAudioEncoder.build for random weights")
        source = str(source)
        try:
            model = AutoModel.from_pretrained(source, local_files_only=local_files_only, dtype=torch_dtype)
        except OSError as err:
            raise InputError(source, f"audio encoder weights not found ({err.__class__.__name__})", "run `soul download --component audio_encoder` or pass a local checkpoint directory") from err
        try:
            extractor = Wav2Vec2FeatureExtractor.from_pretrained(source, local_files_only=local_files_only)
        except OSError:
            logger.info("%s has no preprocessor_config.json; using wav2vec2's standard feature extractor", source)
            extractor = None
        return cls(model, extractor, **kwargs)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write model and feature extractor so ``from_pretrained(directory)`` restores both."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, safe_serialization=True)
        self.feature_extractor.save_pretrained(out)
        return out

    # ------------------------------------------------------------------------------ properties

    @property
    def sample_rate(self) -> int:
        return int(self.feature_extractor.sampling_rate)

    @property
    def feature_rate(self) -> float:
        """Feature frames per second (50 for every standard wav2vec2 stack)."""
        return self.sample_rate / self.hop

    @property
    def feature_offset(self) -> float:
        """Time of feature frame 0 in seconds: the centre of its receptive field."""
        return (self.receptive_field - 1) / 2.0 / self.sample_rate

    @property
    def num_hidden_states(self) -> int:
        """``L``: the embedding output plus one per transformer layer."""
        return int(self.model.config.num_hidden_layers) + 1

    @property
    def hidden_size(self) -> int:
        """``D``: the width of every hidden state."""
        return int(self.model.config.hidden_size)

    def window(self, context: int | None = None) -> int:
        """``W``: video frames per latent frame's window."""
        return TEMPORAL_FACTOR + 2 * (self.context_frames if context is None else context)

    def num_feature_frames(self, num_samples: int) -> int:
        """Feature frames wav2vec2 emits for ``num_samples`` (inputs shorter than one frame are padded)."""
        return max(0, num_samples - self.receptive_field) // self.hop + 1

    # -------------------------------------------------------------------------------- encoding

    def normalize(self, samples: np.ndarray) -> np.ndarray:
        """The checkpoint's input normalisation, applied once to the whole track.

        Normalising each segment on its own would make segment borders audible to the model.
        """
        arr = _check_samples(samples)
        values = self.feature_extractor(arr, sampling_rate=self.sample_rate, return_tensors="np").input_values
        return np.asarray(values[0], dtype=np.float32)

    @torch.no_grad()
    def _forward(self, values: np.ndarray) -> torch.Tensor:
        param = next(self.model.parameters())
        x = torch.from_numpy(np.ascontiguousarray(values))[None].to(param.device, param.dtype)
        out = self.model(x, output_hidden_states=True, return_dict=True)
        return torch.stack([h[0] for h in out.hidden_states], dim=0).float()

    @torch.no_grad()
    def encode(self, samples: np.ndarray, *, normalized: bool = False) -> torch.Tensor:
        """All hidden states of a 16 kHz mono track: ``[L, T_a, D]`` float32 at ``feature_rate``.

        ``normalized=True`` skips the input normalisation (the caller already applied
        ``normalize`` to the whole track). Memory is bounded by the segment length, not by the
        track length, apart from the ``[L, T_a, D]`` result itself.
        """
        values = _check_samples(samples) if normalized else self.normalize(samples)
        if values.shape[0] < self.receptive_field:
            values = np.pad(values, (0, self.receptive_field - values.shape[0]))
        total = self.num_feature_frames(values.shape[0])
        core = max(1, int(round(self.segment_seconds * self.feature_rate)))
        margin = int(math.ceil(self.context_seconds * self.feature_rate))
        if total <= core + 2 * margin:
            return self._forward(values)
        param = next(self.model.parameters())
        out = torch.empty(self.num_hidden_states, total, self.hidden_size, dtype=torch.float32, device=param.device)
        for c0 in range(0, total, core):
            c1 = min(total, c0 + core)
            f0, f1 = max(0, c0 - margin), min(total, c1 + margin)
            segment = values[f0 * self.hop : (f1 - 1) * self.hop + self.receptive_field]
            hidden = self._forward(segment)
            if hidden.shape[1] != f1 - f0:
                raise RuntimeError(f"segment gave {hidden.shape[1]} frames, expected {f1 - f0}: unusual conv padding in {type(self.model).__name__}")
            out[:, c0:c1] = hidden[:, c0 - f0 : c1 - f0]
        return out

    def to_video_rate(self, features: torch.Tensor, num_video_frames: int, fps: float) -> torch.Tensor:
        """``resample_to_video`` with this encoder's feature rate and frame-0 offset."""
        return resample_to_video(features, num_video_frames, fps, feature_rate=self.feature_rate, feature_offset=self.feature_offset)

    def encode_streams(
        self,
        streams: Sequence[np.ndarray],
        *,
        fps: float,
        num_frames: int,
        sample_rate: int = SAMPLE_RATE,
        context: int | None = None,
    ) -> torch.Tensor:
        """N speakers' tracks -> ``[N, F_lat, W, L, D]`` for a video of ``num_frames`` (4k+1).

        Each track is normalised on its own, then all are padded with digital silence (zero
        samples, after normalisation) to cover the video, so a speaker whose track is shorter
        is heard as silent, not as missing; the guidance "null" (zeroed features) is a separate,
        deliberate choice of the sampler. Audio beyond the video (plus the segment margin the
        last frames need) is not encoded.
        """
        if sample_rate != self.sample_rate:
            raise InputError("audio", f"is {sample_rate} Hz but the audio encoder needs {self.sample_rate} Hz", f"load it with soul.media.load_audio(path, {self.sample_rate})")
        fps = float(fps)
        if not (math.isfinite(fps) and fps > 0):
            raise InputError("fps", f"{fps}", "use a positive frame rate, e.g. 24")
        if len(streams) == 0:
            raise InputError("audio", "no tracks given", "pass at least one 16 kHz mono track")
        windows = latent_frame_windows(num_frames, self.context_frames if context is None else context)
        normalized = [self.normalize(_check_samples(s, f"audio[{n}]")) for n, s in enumerate(streams)]
        covered = int(math.ceil((num_frames - 1) / fps * self.sample_rate)) + self.receptive_field
        needed = covered + int(math.ceil(self.context_seconds * self.sample_rate))
        length = max(covered, min(needed, max(v.shape[0] for v in normalized)))
        out = []
        for values in normalized:
            values = values[:length]
            if values.shape[0] < length:
                values = np.pad(values, (0, length - values.shape[0]))
            video_rate = self.to_video_rate(self.encode(values, normalized=True), num_frames, fps)
            out.append(window_features(video_rate, windows))
        return torch.stack(out, dim=0)

    def encode_for_video(
        self,
        samples: np.ndarray,
        sample_rate: int,
        num_video_frames: int,
        fps: float,
        context: int | None = None,
    ) -> torch.Tensor:
        """One track -> ``[F_lat, W, L, D]`` windows for a video of ``num_video_frames`` (4k+1)."""
        return self.encode_streams([samples], fps=fps, num_frames=num_video_frames, sample_rate=sample_rate, context=context)[0]
