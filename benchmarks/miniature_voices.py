"""Lip sync of the miniature model on real voices it never trained on: `soul demo --audio X` per voice.

    python benchmarks/miniature_voices.py                          # shipped mini, the held-out voices
    python benchmarks/miniature_voices.py --checkpoint runs/X --seeds 0 1

The voices are every recording of ../shared/media that never enters training (TRAIN_SPEECH lists
those that do): English radio speakers, Mandarin news, a Mandarin poem and a bus announcement,
German, and the Wan and Hallo speech. Each is looped to `--seconds` (the chance level of a short
clip is high: two smooth series of 8 s correlate at 0.2-0.3 by chance) and animated on held-out
drawn faces (`--seeds`). The bar (issue 17): lipsync_r >= 0.75 on every voice, not on the mean,
and lipsync_r_mismatched (the same video against unrelated audio) <= 0.15.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
VOICES = (
    "audio/voices/sadtalker_RD_Radio31_000.wav", "audio/voices/sadtalker_RD_Radio34_002.wav", "audio/voices/sadtalker_deyu.wav",
    "audio/voices/sadtalker_chinese_news.wav", "audio/voices/sadtalker_bus_chinese.wav", "audio/voices/sadtalker_chinese_poem1.wav",
    "audio/wan_talk.wav", "audio/hallo_3.wav", "audio/wan_prompt_16k_mono.wav",
)
R_BAR, MISMATCHED_BAR = 0.75, 0.15


def looped_voice(path: Path, seconds: float, out: Path) -> Path:
    import soundfile as sf

    from soul.media.audio import MODEL_SAMPLE_RATE, load_audio

    samples = load_audio(path, MODEL_SAMPLE_RATE).samples
    n = int(round(seconds * MODEL_SAMPLE_RATE))
    sf.write(out, np.tile(samples, n // samples.shape[0] + 1)[:n], MODEL_SAMPLE_RATE)
    return out


def demo_scores(args: list[str]) -> dict:
    """`soul demo ... --json` in this process; its summary."""
    from soul.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(args)
        except SystemExit as exc:
            if exc.code:
                raise SystemExit(f"soul demo {' '.join(args)} failed with {exc.code}") from None
    return json.loads(out.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="pipeline directory (default: the shipped weights of --preset)")
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--voices", nargs="*", default=list(VOICES), help="paths under ../shared/media, or absolute paths (any file with an audio track)")
    args = parser.parse_args(argv)
    paths = [MEDIA / v for v in args.voices]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"{missing[0]}: not found; run beside ../shared/media or give --voices")
    from soul.miniature.speech_pool import TRAIN_SPEECH

    trained = [v for v in args.voices if v in TRAIN_SPEECH]
    if trained:
        raise SystemExit(f"{trained[0]}: is training speech (TRAIN_SPEECH); give held-out voices")

    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            voice = looped_voice(path, args.seconds, Path(tmp) / f"{path.stem}.wav")
            for seed in args.seeds:
                cmd = ["demo", "--audio", str(voice), "--seed", str(seed), "--out", str(Path(tmp) / f"{path.stem}-{seed}"), "--json", "--preset", args.preset]
                if args.checkpoint is not None:
                    cmd += ["--checkpoint", str(args.checkpoint)]
                s = demo_scores(cmd)
                rows.append((path.stem, seed, s["lipsync_r"], s["lipsync_r_mismatched"]))
                print(f"miniature_voices {path.stem} seed {seed}: r {s['lipsync_r']:.3f} mismatched {s['lipsync_r_mismatched']:.3f}", flush=True)
    rs = np.array([r for _, _, r, _ in rows])
    mm = np.array([m for _, _, _, m in rows])
    print(f"miniature_voices lowest r {rs.min():.3f} (bar {R_BAR}), mean {rs.mean():.3f}; voices at or above the bar: {int((rs >= R_BAR).sum())}/{len(rs)}")
    print(f"miniature_voices highest mismatched {mm.max():.3f} (bar {MISMATCHED_BAR}), mean {mm.mean():.3f}")


if __name__ == "__main__":
    sys.exit(main())
