"""The miniature world's stand-in for wav2vec2's speech pretraining: a denoising spectrogram task.

The 5B model reads speech through a wav2vec2 pretrained on hundreds of hours of speech. The
miniature world had a random, frozen one of the same class. Its features carry the envelope of
speech like the six training recordings, but on a radio studio, a news broadcast or a bus's
loudspeaker a read-out trained on them reaches only 0.75-0.83 (docs/miniature.md, "Voices it
never heard"): under what lip sync needs once the VAE and the transformer have taken their share.

The task: from the *heard* audio (a voice through noise and a transmission channel,
`SpeechPool.hear`) predict the log-mel spectrogram of the *clean* speech, through one linear
read-out of every hidden state (the transformer reads every layer too). It asks for speech
features that ignore the room and the line; it does not name the drawn world's mouth rule (the
300-3400 Hz envelope), which the transformer still has to learn from the clips.

Spectrogram frame ``j`` is taken over exactly the samples feature frame ``j`` sees (its receptive
field, one hop apart), so target and features align without resampling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from soul.miniature.speech import synthesize_babble
from soul.miniature.speech_pool import AUDIO_RATE, SpeechPool

FLOOR_DB = 50.0  # the target's floor under the clip's loudest band: silence is "quiet", not -80 dB


@dataclass(frozen=True)
class AudioPretrainConfig:
    steps: int = 600
    batch_size: int = 4
    seconds: float = 3.0
    lr: float = 3e-4
    n_mels: int = 40
    babble_share: float = 0.25  # clips of synthesised babble beside the pool's speech (the transformer meets both)
    seed: int = 0
    log_every: int = 50


def clean_log_mel(speech: np.ndarray, hop: int, field: int, n_mels: int) -> np.ndarray:
    """``[frames, n_mels]`` log-mel of ``speech`` over each feature frame's receptive field, in
    bels from the clip's mean, floored `FLOOR_DB` under its loudest value."""
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    n_fft = 1 << (field - 1).bit_length()
    if speech.shape[0] < field:
        speech = np.pad(speech, (0, field - speech.shape[0]))
    filters = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=60.0, max_frequency=AUDIO_RATE / 2 - 400,
        sampling_rate=AUDIO_RATE, norm="slaney", mel_scale="slaney",
    )
    # center=False: frame j starts at j * hop, exactly the samples wav2vec2's feature frame j sees
    db = spectrogram(
        np.asarray(speech, np.float64), window_function(field, "hann", periodic=False), frame_length=field, hop_length=hop,
        fft_length=n_fft, power=2.0, center=False, mel_filters=filters, mel_floor=1e-20, log_mel="dB", db_range=FLOOR_DB, dtype=np.float64,
    ).T
    return ((db - db.mean()) / 10).astype(np.float32)


def pretrain_audio_encoder(
    encoder: object, pool: SpeechPool, cfg: AudioPretrainConfig = AudioPretrainConfig(), log: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``encoder`` (a `soul.models.audio_encoder.SoulAudioEncoder`) in place on the denoising
    task; it is left in eval mode with frozen weights. Returns the run's summary (losses, minutes)."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = encoder.model  # type: ignore[attr-defined]
    model.config.layerdrop = 0.0  # LayerDrop would change the number of hidden states from step to step
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    width = encoder.num_hidden_states * encoder.hidden_size  # type: ignore[attr-defined]
    head = torch.nn.Linear(width, cfg.n_mels)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=cfg.lr)
    hop, field = encoder.hop, encoder.receptive_field  # type: ignore[attr-defined]

    def sample() -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < cfg.babble_share:
            speech = synthesize_babble(cfg.seconds, AUDIO_RATE, seed=int(rng.integers(1 << 31)))
        else:
            speech = pool.segment(cfg.seconds, rng)
        return pool.hear(speech, rng), clean_log_mel(speech, hop, field, cfg.n_mels)

    def loss_of(heard: np.ndarray, target: np.ndarray) -> torch.Tensor:
        values = torch.from_numpy(encoder.normalize(heard))[None]  # type: ignore[attr-defined]
        hidden = torch.cat(model(values, output_hidden_states=True).hidden_states, dim=-1)[0]  # [T, L*D]
        n = min(hidden.shape[0], target.shape[0])
        return torch.mean((head(hidden[:n]) - torch.from_numpy(target[:n])) ** 2)

    started, losses = time.monotonic(), []
    for step in range(1, cfg.steps + 1):
        loss = torch.stack([loss_of(*sample()) for _ in range(cfg.batch_size)]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if log is not None and (step % cfg.log_every == 0 or step == cfg.steps):
            log({"step": step, "loss": round(float(np.mean(losses[-cfg.log_every:])), 5), "minutes": round((time.monotonic() - started) / 60, 2)})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    window = min(cfg.log_every, len(losses))
    return {
        **asdict(cfg), "loss_first": round(float(np.mean(losses[:window])), 5), "loss_last": round(float(np.mean(losses[-window:])), 5),
        "minutes": round((time.monotonic() - started) / 60, 2),
    }


__all__ = ["AudioPretrainConfig", "clean_log_mel", "pretrain_audio_encoder"]
