"""Does a light decoder keep the person? Identity distance to the portrait of faces nobody trained on.

`benchmarks/speed.py` judges the whole fast path on 4 faces; a decoder's share of the identity
loss is hidden in it and every look at those faces spends them. This script isolates the decoder
on many more faces of its own range: the fast student samples drawn faces (seeds `--seed` + i,
default 6_000_000 + i: no training pool, stopping decision or speed.py face set is there; the
distiller's pools are seed * 10_000 + 0 .. 7_999) driven by their own babble, and the same
latents are decoded by each decoder. Per decoder: the mean identity distance to the portrait
(`soul.miniature.drift.distance_to_portrait`, the measure speed.py uses, here on frames in memory,
not an MP4) and its ratio to the first full decoder's. A light decoder can be no better than its
teacher on average; the ratio says how much of the teacher's fidelity it keeps.

Negative control (`--control`, on by default): the full decoder's frames of each face scored
against the next face's portrait; it must come out far above every decoder, or the measure
cannot tell people apart.

    .venv/bin/python benchmarks/light_decoder_identity.py                          # shipped mini-fast: full vs light
    .venv/bin/python benchmarks/light_decoder_identity.py --light new=runs/distill-vae-x/light_vae --full 1p=runs/mini-export

Last lines: `light_decoder_identity <name>: <mean> (<ratio> x <first full decoder>)`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

UNSEEN_SEED = 6_000_000
CONTROL = "control-other-portrait"


def _named(spec: str, what: str) -> tuple[str, Path]:
    name, sep, directory = spec.partition("=")
    if not sep or not name or not Path(directory).is_dir():
        raise SystemExit(f"--{what} {spec!r}: give NAME=DIR with an existing directory (e.g. {what}=runs/distill-vae-mini/light_vae)")
    return name, Path(directory)


def frames_uint8(video: torch.Tensor) -> np.ndarray:
    """[1, 3, T, H, W] in -1..1 -> [T, H, W, 3] uint8, as the pipeline writes frames."""
    return ((video[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", type=Path, default=None, help="pipeline directory that samples the latents (default: shipped mini-fast)")
    parser.add_argument("--sampler-preset", default="mini-fast", help="--sampler's preset (name or YAML file), e.g. a fast preset of another model")
    parser.add_argument("--full", action="append", default=[], help="NAME=DIR: a pipeline directory whose vae/ is a full decoder to compare (repeatable)")
    parser.add_argument("--light", action="append", default=[], help="NAME=DIR: a light decoder directory (repeatable)")
    parser.add_argument("--seed", type=int, default=UNSEEN_SEED)
    parser.add_argument("--faces", type=int, default=12)
    parser.add_argument("--frames", type=int, default=161, help="frames per face (4k+1), 16 fps")
    parser.add_argument("--control", action=argparse.BooleanOptionalAction, default=True, help="the swapped-anchor negative control")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    fulls = [_named(spec, "full") for spec in args.full]  # bad arguments fail before any model loads
    lights = [_named(spec, "light") for spec in args.light]
    torch.set_num_threads(args.threads)  # after the checks: a refused call leaves its caller's threads alone

    from soul.miniature.drift import distance_to_portrait
    from soul.miniature.portrait import draw_face
    from soul.miniature.sampled import sample_drawn_latents
    from soul.models.light_vae import LightDecoder
    from soul.models.vae import decode_latents, load_vae
    from soul.pipelines.shipped import load_shipped_pipeline
    from soul.pipelines.soul_pipeline import SoulPipeline

    if args.sampler is not None:
        pipe = SoulPipeline.from_pretrained(str(args.sampler), preset=args.sampler_preset, torch_dtype=torch.float32)
    else:
        pipe = load_shipped_pipeline("mini-fast")
    decoders: dict[str, object] = {"full": pipe.vae}
    for name, directory in fulls:
        decoders[name] = load_vae(str(directory))
    if pipe.light_vae is not None:
        decoders["light"] = pipe.light_vae.eval()
    for name, directory in lights:
        decoders[name] = LightDecoder.from_pretrained(str(directory)).eval()

    def decode(decoder: object, z: torch.Tensor) -> torch.Tensor:
        return decoder(z) if isinstance(decoder, LightDecoder) else decode_latents(decoder, z)  # type: ignore[operator,arg-type]

    size, fps = pipe.config.sampling.width, 16.0
    started = time.perf_counter()
    scores: dict[str, list[float]] = {name: [] for name in decoders}
    if args.control:
        scores[CONTROL] = []
    faces, latents = [], []
    for i in range(args.faces):
        clip, z = sample_drawn_latents(pipe, args.seed + i, args.frames, fps, size)  # as the distiller's sampled pools
        faces.append(clip.face)
        latents.append(z)
    for i, (face, z) in enumerate(zip(faces, latents)):
        portrait = np.asarray(draw_face(face, size))
        with torch.no_grad():
            for name, decoder in decoders.items():
                scores[name].append(distance_to_portrait(frames_uint8(decode(decoder, z)), face, portrait)["identity_distance"])
            if args.control:
                other = faces[(i + 1) % len(faces)]
                scores[CONTROL].append(distance_to_portrait(frames_uint8(decode(decoders["full"], z)), other,
                                                            np.asarray(draw_face(other, size)))["identity_distance"])
    print(f"{args.faces} unseen faces (draw_clip({args.seed} + i)), {args.frames} frames each, latents of "
          f"{args.sampler or 'shipped mini-fast'}; {time.perf_counter() - started:.0f} s")
    print("per face: " + "; ".join(f"{name} " + " ".join(f"{v:.4f}" for v in vals) for name, vals in scores.items()))
    reference = float(np.mean(scores["full"]))
    for name, vals in scores.items():
        mean = float(np.mean(vals))
        print(f"light_decoder_identity {name}: {mean:.4f} ({mean / reference:.3f} x full)")


if __name__ == "__main__":
    main()
