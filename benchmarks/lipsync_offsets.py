"""lmsync on real clips: absolute offsets, injected shifts, and the controls that must fail.

    python benchmarks/lipsync_offsets.py                      # the test set: ../shared/media's talking clips
    python benchmarks/lipsync_offsets.py --clips A.mp4 B.mp4  # any clips with their own audio (e.g. the tuning set)

For each clip (its largest face): the offset and confidence with its own audio; the offsets with the
audio advanced by k = ±3..8 frames (the video then lags by k: correct within ±1 means k ± 1); the
same shifts scored against smoothed-noise mouths (negative control: confident hits within ±1 should
stay at chance); other recordings' audio (`--foreign`, looped to length) against the clip's mouth. The last lines are the totals and the 95th
percentile of the foreign-audio confidences: how `MIN_CONFIDENCE` is chosen on a tuning set.

`--signals` compares mouth signals on the foreign-audio ranking (how lmsync's signal was chosen).
Which clips were the tuning set, and the figures, are in soul.analysis.lipsync and docs/data.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
TEST_SET = ("talking_face_1", "talking_face_2", "talking_face_3", "talking_upper_body_host")
SHIFTS = (-8, -6, -5, -4, -3, 3, 4, 5, 6, 8)
SR = 16_000


def clip_series(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Mouth signals of the clip's largest face (gap and darkness), its 16 kHz audio and fps."""
    from soul.analysis import FaceAnalyzer, face_tracks, mouth_series
    from soul.media.video import read_video

    reader = read_video(path)
    frames = list(reader.frames())
    analyzer = FaceAnalyzer(detect_max_side=480)
    tracks = face_tracks(frames, analyzer, detect_every=5)
    if not tracks:
        raise SystemExit(f"{path}: no face tracked; give clips with a visible talking face")
    series = {signal: mouth_series(frames, analyzer, tracks[0], signal=signal) for signal in ("gap", "darkness")}
    return series, reader.read_audio(SR).samples, reader.fps


def looped(audio: np.ndarray, n: int) -> np.ndarray:
    return np.tile(audio, n // len(audio) + 1)[:n]


def noise_mouth(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + seed)
    return np.convolve(rng.standard_normal(n + 6), np.hanning(5), mode="same")[3 : 3 + n]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="*", type=Path, default=None, help="clips with their own audio (default: the test set)")
    parser.add_argument("--signals", action="store_true", help="also rank foreign audio with other mouth signals")
    parser.add_argument("--noise-seeds", type=int, default=10)
    parser.add_argument("--foreign", choices=("voices", "all"), default="voices",
                        help="voices: the 11 speech and singing recordings of shared/media/audio (voices/ and hallo_*; how the "
                             "threshold was chosen); all: also the other audio there and the other clips' own tracks")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from soul.analysis.lipsync import MIN_CONFIDENCE, articulation, estimate_offset, lmsync, shift_audio, speech_band_energy
    from soul.media.audio import load_audio

    paths = args.clips if args.clips else [MEDIA / "clips" / f"{name}.mp4" for name in TEST_SET]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"{missing[0]}: not found; give existing clips (the test set needs ../shared/media)")
    pattern = "hallo_*.wav" if args.foreign == "voices" else "*.wav"
    voices = sorted((MEDIA / "audio" / "voices").glob("*.wav")) + sorted((MEDIA / "audio").glob(pattern))
    foreign = {p.stem: load_audio(p, SR).mono() for p in voices}
    clips = {p.stem: clip_series(p) for p in paths}
    if args.foreign == "all":
        foreign.update({name: audio for name, (_, audio, _) in clips.items()})

    signals = {"articulation (lmsync)": lambda s: articulation(s["gap"]), "gap": lambda s: s["gap"], "darkness": lambda s: s["darkness"]}
    in_sync = tracked = noise_hits = noise_cases = below = pairs = 0
    foreign_conf: list[float] = []
    ranking = {name: [0, 0] for name in signals}
    for name, (series, audio, fps) in clips.items():
        gap = series["gap"]
        own = lmsync(gap, audio, SR, fps)
        ok = own.confident() and own.offset is not None and abs(own.offset) <= 1
        in_sync += ok
        shifted = [lmsync(gap, shift_audio(audio, SR, fps, -k), SR, fps) for k in SHIFTS]
        hits = [e.confident() and e.offset is not None and abs(e.offset - k) <= 1 for e, k in zip(shifted, SHIFTS)]
        tracked += sum(hits)
        theirs = [lmsync(gap, looped(a, len(audio)), SR, fps).confidence for other, a in foreign.items() if other != name]
        foreign_conf += theirs
        noise = [noise_mouth(len(gap), s) for s in range(args.noise_seeds)]
        noise_own = [estimate_offset(m, speech_band_energy(audio, SR, fps, len(m))).confidence for m in noise]
        below += sum(c < own.confidence for c in theirs + noise_own)
        pairs += len(theirs) + len(noise_own)
        for m in noise:
            for k in SHIFTS:
                est = estimate_offset(m, speech_band_energy(shift_audio(audio, SR, fps, -k), SR, fps, len(m)))
                noise_cases += 1
                noise_hits += bool(est.confident() and abs(est.offset - k) <= 1)
        print(f"{name}: offset {own.offset} conf {own.confidence:.2f} (peak r {own.peak_r:.2f}) | shifts tracked {sum(hits)}/{len(SHIFTS)}"
              f" | foreign audio below own {sum(c < own.confidence for c in theirs)}/{len(theirs)} (max {max(theirs):.2f})", flush=True)
        if args.signals:
            for label, read in signals.items():
                m = read(series)
                mine = estimate_offset(m, speech_band_energy(audio, SR, fps, len(m))).confidence
                others = [estimate_offset(m, speech_band_energy(looped(a, len(audio)), SR, fps, len(m))).confidence
                          for other, a in foreign.items() if other != name]
                ranking[label][0] += sum(c < mine for c in others)
                ranking[label][1] += len(others)
    if args.signals:
        for label, (good, total) in ranking.items():
            print(f"lipsync_offsets signal {label}: own audio above foreign in {good}/{total} pairs")
    n = len(clips)
    print(f"lipsync_offsets in sync within ±1 (confident): {in_sync}/{n}")
    print(f"lipsync_offsets shifts ±3..8 tracked within ±1 (confident): {tracked}/{n * len(SHIFTS)}")
    print(f"lipsync_offsets negative control, noise mouths tracking the shifts: {noise_hits}/{noise_cases}")
    print(f"lipsync_offsets own audio above foreign audio and noise mouths: {below}/{pairs} ({below / pairs:.0%})")
    cleared = sum(c >= MIN_CONFIDENCE for c in foreign_conf)
    print(f"lipsync_offsets foreign-audio pairs clearing MIN_CONFIDENCE {MIN_CONFIDENCE}: {cleared}/{len(foreign_conf)}")
    print(f"lipsync_offsets foreign-audio confidence 95th percentile: {np.quantile(foreign_conf, 0.95):.2f}")


if __name__ == "__main__":
    sys.exit(main())
