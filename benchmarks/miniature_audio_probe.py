"""How much of the mouth-driving audio envelope a frozen audio encoder's features carry.

Why: the miniature presets use a small wav2vec2 (no wav2vec2 checkpoint can be downloaded here),
random and frozen in `mini16`, pretrained on speech here in `mini` (`soul mini train-audio`); this
probe builds the preset's encoder at random unless `--encoder` names a trained one. If its features do not carry the speech-band energy the drawn mouths
follow, no amount of transformer training can learn lip sync. This fits a ridge regression from
each hidden state (and all of them) at video rate, +-2 frames of context, to the drawn opening
truth on training clips, and reports R^2 on held-out clips (babble, and real speech when
shared/media/audio has some).

Run: .venv/bin/python benchmarks/miniature_audio_probe.py [--preset mini] [--clips 24]

`--voices` instead fits the read-out (all hidden states) on 64 babble clips and 64 pieces of the
training recordings (`TRAIN_SPEECH`) and prints Pearson r per held-out voice of
benchmarks/miniature_voices.py (looped to 20 s), the last line the lowest and the mean.
`--encoder DIR` probes a pretrained encoder (`soul mini train-audio` writes RUN/audio_encoder)
instead of the preset's random one.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path
import json

import numpy as np
import torch

from soul.config import load_preset
from soul.media.audio import load_audio
from soul.miniature.clips import speech_features
from soul.miniature.speech import synthesize_babble
from soul.models.audio_encoder import SoulAudioEncoder

FPS = 16.0


def features(enc: SoulAudioEncoder, audio: np.ndarray, n: int) -> np.ndarray:
    """[n, L, D] hidden states at video rate."""
    return enc.to_video_rate(enc.encode(audio), n, FPS).permute(1, 0, 2).numpy()


def windowed(x: np.ndarray, context: int = 2) -> np.ndarray:
    pad = np.pad(x, ((context, context), (0, 0)), mode="edge")
    return np.concatenate([pad[i : i + x.shape[0]] for i in range(2 * context + 1)], axis=1)


def ridge(x: np.ndarray, y: np.ndarray, lam: float = 1.0) -> np.ndarray:
    x1 = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    return np.linalg.solve(x1.T @ x1 + lam * np.eye(x1.shape[1]), x1.T @ y)


def r2(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    pred = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1) @ w
    return float(1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--encoder", type=Path, default=None, help="a pretrained audio encoder directory")
    parser.add_argument("--voices", nargs="*", default=None, help="r per held-out voice (see above); paths as in miniature_voices.py --voices (default: its voices)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = load_preset(args.preset)
    enc = SoulAudioEncoder.from_pretrained(args.encoder, config, torch_dtype=torch.float32) if args.encoder else SoulAudioEncoder.build(config)
    if args.voices is not None:
        held_out_voices(enc, args.voices)
        return
    n = int(args.seconds * FPS)

    def data(tracks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for a in tracks:
            m = int(len(a) / 16000 * FPS)
            f = features(enc, a, m)
            xs.append(f)
            ys.append(speech_features(a, m, FPS)[0])
        return np.concatenate(xs), np.concatenate(ys)

    train_x, train_y = data([synthesize_babble(args.seconds, seed=s) for s in range(args.clips)])
    sets = {"babble": data([synthesize_babble(args.seconds, seed=10_000 + s) for s in range(8)])}
    real = sorted(glob.glob(str(Path(__file__).resolve().parents[1].parent / "shared" / "media" / "audio" / "*.wav")))
    if real:
        sets["real"] = data([load_audio(p, 16000).samples[: int(16000 * 8)] for p in real])
    layers = train_x.shape[1]
    out: dict[str, dict[str, float]] = {}
    for name, sel in [*((f"layer{i}", [i]) for i in range(layers)), ("all", list(range(layers)))]:
        tx = windowed(train_x[:, sel].reshape(train_x.shape[0], -1))
        w = ridge(tx, train_y)
        out[name] = {k: round(r2(windowed(x[:, sel].reshape(x.shape[0], -1)), y, w), 3) for k, (x, y) in sets.items()}
    print(json.dumps({"preset": args.preset, "held_out_r2": out}, indent=1))


def held_out_voices(enc: SoulAudioEncoder, voices: list[str]) -> None:
    from miniature_voices import MEDIA, VOICES

    from soul.miniature.speech_pool import SpeechPool

    def data(tracks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for a in tracks:
            m = int(len(a) / 16000 * FPS)
            xs.append(windowed(features(enc, a, m).reshape(m, -1)))
            ys.append(speech_features(a, m, FPS)[0])
        return np.concatenate(xs), np.concatenate(ys)

    rng = np.random.default_rng(0)
    pool = SpeechPool.from_media(MEDIA)
    w = ridge(*data([synthesize_babble(3.0, seed=s) for s in range(64)] + [pool.segment(3.0, rng) for _ in range(64)]))
    rs = []
    for voice in voices or VOICES:
        a = load_audio(MEDIA / voice, 16000).samples
        a = np.tile(a, 20 * 16000 // a.shape[0] + 1)[: 20 * 16000]
        x, y = data([a])
        rs.append(float(np.corrcoef(np.concatenate([x, np.ones((x.shape[0], 1))], 1) @ w, y)[0, 1]))
        print(f"audio_probe {Path(voice).stem}: r {rs[-1]:.3f}", flush=True)
    print(f"audio_probe lowest r {min(rs):.3f}, mean {np.mean(rs):.3f}")


if __name__ == "__main__":
    main()
