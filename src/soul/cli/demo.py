"""`soul demo`: a complete, scored generation on inputs Soul makes itself, so it runs anywhere, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from soul.cli.app import app, state

if TYPE_CHECKING:  # torch-free start-up: the CLI imports these only when a command runs
    import numpy as np

    from soul.miniature.group import DrawnGroup

MINI_MISSING_NOTE = "the trained miniature weights are not installed (docs/miniature.md), so the demo uses the tiny preset"
DEFAULT_SECONDS = 20.0
PROMPT = "a drawn person talking to the camera, head and shoulders"  # soul.miniature.clips.CAPTION (not imported: --help stays torch-free)
GROUP_PROMPT = "drawn people side by side, talking in turns, head and shoulders"
MAX_DEMO_PEOPLE = 4  # soul.miniature.group.MAX_PEOPLE (not imported: --help stays torch-free)


def default_preset() -> tuple[str, str]:
    """The trained miniature model when its weights ship with the package, else the random tiny one."""
    from soul.models.shipped import has_shipped_weights

    return ("mini", "") if has_shipped_weights("mini") else ("tiny", MINI_MISSING_NOTE)


@app.command(
    help=(
        "Draw a new face, synthesise speech (or take --audio), animate it with the trained miniature "
        "model (20 s by default), and score the video: lip sync against this audio (lipsync_r) and "
        "against another clip's audio (lipsync_r_mismatched, ~0 when the mouth really follows the sound), "
        "identity and colour drift, flicker. Writes portrait.png, speech.wav, demo.mp4 and summary.json "
        "to --out. Needs no downloads.\n\n"
        "Examples:\n\n  soul demo\n\n  soul demo --audio speech.wav --seed 7 --out /tmp/demo --json\n\n"
        "  soul demo --preset mini-fast --seconds 60\n\n"
        "  soul demo --people 3 --json   (three people, each with their own voice: per person lipsync_r "
        "with their own voice and lipsync_r_cross with each other voice)"
    )
)
def demo(
    audio: list[Path] = typer.Option(None, "--audio", "-a", help="Speech to use instead of synthesised babble (cut to --seconds when given); with --people N, once per person, left to right."),
    people: int = typer.Option(1, "--people", help=f"People in the picture (1-{MAX_DEMO_PEOPLE}), side by side, each speaking their own voice in turns; scored per person against every voice."),
    seconds: float = typer.Option(None, "--seconds", help=f"Length in seconds (default {DEFAULT_SECONDS:.0f}, or the whole --audio)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the face, the speech and the sampling; faces and speech come from the held-out range (face_seed = 1,000,000 + seed), never from training."),
    out: Path = typer.Option(Path("outputs/demo"), "--out", help="Output directory."),
    preset: str = typer.Option(None, "--preset", help="mini (trained, the default when installed), mini-fast (distilled, from mini16), mini16 (the earlier 16x-VAE model), or tiny (random weights)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A pipeline directory to use instead of the preset's weights (e.g. a run exported by soul mini export)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    import soundfile as sf

    from soul.cli.progress import step_progress
    from soul.errors import InputError
    from soul.jobs.generate import build_request, run_generate
    from soul.media.audio import MODEL_SAMPLE_RATE, load_audio
    from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face
    from soul.miniature.speech import synthesize_babble

    note = ""
    if preset is None:
        preset, note = default_preset()
    if seconds is not None and not seconds > 0:
        raise InputError(f"--seconds {seconds}", "must be positive", f"e.g. --seconds {DEFAULT_SECONDS:.0f}")
    if not 1 <= people <= MAX_DEMO_PEOPLE:
        raise InputError(f"--people {people}", f"must be 1 to {MAX_DEMO_PEOPLE}", "e.g. --people 2")
    audio = list(audio or [])
    if people > 1 and audio and len(audio) != people:
        raise InputError(f"--audio ({len(audio)} given)", f"--people {people} needs one voice per person", f"give --audio {people} times, left to right, or none for babble")
    if people == 1 and len(audio) > 1:
        raise InputError(f"--audio ({len(audio)} given)", "one person speaks one voice", "give --audio once, or --people N for N voices")
    for path in audio:
        if not path.is_file():
            raise InputError(path, "audio file not found", "check the path")
    out.mkdir(parents=True, exist_ok=True)
    if checkpoint is not None and not (checkpoint / "model_index.json").is_file():
        raise InputError(checkpoint, "is not a pipeline directory (no model_index.json)", "give a directory written by soul mini export or save_pretrained")
    if people > 1:
        _demo_group(people, audio, seconds, seed, out, preset, checkpoint, note, json_out)
        return
    audio_file = audio[0] if audio else None
    face_seed = HELD_OUT_SEED + seed  # a person (and babble) no training clip was drawn from
    face = random_face(face_seed)
    portrait = out / "portrait.png"
    draw_face(face, size=512).save(portrait)
    speech = out / "speech.wav"
    if audio_file is None:
        sf.write(speech, synthesize_babble(seconds or DEFAULT_SECONDS, MODEL_SAMPLE_RATE, seed=face_seed), MODEL_SAMPLE_RATE)
    elif seconds is not None:
        samples = load_audio(audio_file, MODEL_SAMPLE_RATE, normalize=False).samples
        sf.write(speech, samples[: int(round(seconds * MODEL_SAMPLE_RATE))], MODEL_SAMPLE_RATE)
    else:
        speech = audio_file
    request = build_request(image=portrait, audio=[speech], output=out / "demo.mp4", preset=preset, checkpoint=checkpoint, seed=seed, prompt=PROMPT)
    with step_progress("sampling", enabled=not (state.quiet or json_out)) as progress:
        result = run_generate(request, progress=progress)
    scores = score_demo(result.output, face, speech, seed)
    weights = result.info.get("weights", preset)
    summary = {
        **result.as_dict(),
        **scores,
        "portrait": str(portrait),
        "audio": str(speech),
        "face_seed": face_seed,
        "face": face.as_dict(),
        "weights": weights,
        "note": _notes(note, result.info["warnings"]),
    }
    if _save_summary(out, summary, json_out):
        return
    typer.echo(f"portrait: {portrait}\naudio:    {speech}\nvideo:    {result.output} ({result.num_frames} frames, {result.duration:.2f} s, {result.seconds:.1f} s to make)")
    typer.echo(
        f"lip sync: r = {scores['lipsync_r']:.2f} with this audio (lag {scores['lipsync_lag']} frames), "
        f"r = {scores['lipsync_r_mismatched']:.2f} with other clips' audio (mean of 4)"
    )
    drift = scores["drift"]
    if len(drift["start_seconds"]) > 1:
        typer.echo(f"drift vs the first {drift['window_seconds']:.0f} s: identity {drift['identity_end']:.4f}, colour {drift['colour_end']:.2f} dE (last window)")
    typer.echo(f"flicker: {scores['flicker']:.3f}")
    portrait_scores = scores["to_portrait"]
    typer.echo(
        f"to the portrait (mean over {portrait_scores['video']['window_seconds']:.0f} s windows): eyes {portrait_scores['eyes']:.4f}, "
        f"face {portrait_scores['identity']:.4f}; the drawn clip of this face and audio: eyes {portrait_scores['drawn_eyes']:.4f}, "
        f"face {portrait_scores['drawn_identity']:.4f}; another person's portrait: eyes {portrait_scores['other_eyes']:.4f}"
    )
    if note:
        typer.echo(note)


def _demo_group(people: int, audio: list[Path], seconds: float | None, seed: int, out: Path, preset: str, checkpoint: Path | None,
                note: str, json_out: bool) -> None:
    """The demo with several people: each person their own voice and their own mask (their slot)."""
    import numpy as np
    import soundfile as sf
    from PIL import Image

    from soul.cli.progress import step_progress
    from soul.config import load_preset
    from soul.jobs.generate import build_request, run_generate
    from soul.media.audio import MODEL_SAMPLE_RATE, load_audio
    from soul.miniature.group import draw_group_clip
    from soul.miniature.portrait import HELD_OUT_SEED

    voices = [load_audio(path, MODEL_SAMPLE_RATE).samples for path in audio]
    if seconds is None:
        seconds = min(v.shape[0] for v in voices) / MODEL_SAMPLE_RATE if voices else DEFAULT_SECONDS
    group_seed = HELD_OUT_SEED + seed  # people (faces: 4 * group_seed + k) and babble nobody trained on
    size = load_preset(preset).sampling.height
    group = draw_group_clip(group_seed, people, seconds, size=size)  # the layout, faces and (without --audio) voices
    if voices:
        n = int(round(seconds * MODEL_SAMPLE_RATE))
        voices = [np.pad(v, (0, max(0, n - v.shape[0])))[:n] for v in voices]
    else:
        voices = group.audios
    scale = max(1, 512 // size)
    portrait = out / "portrait.png"
    Image.fromarray(group.portrait(scale)).save(portrait)
    speech_paths, mask_paths = [], []
    for k, (voice, mask) in enumerate(zip(voices, group.person_masks())):
        speech_paths.append(out / f"speech_{k}.wav")
        sf.write(speech_paths[-1], voice, MODEL_SAMPLE_RATE)
        mask_paths.append(out / f"mask_{k}.png")  # drawn over the portrait: the person's slot
        Image.fromarray(np.kron(mask, np.ones((scale, scale), bool)).astype(np.uint8) * 255).save(mask_paths[-1])
    request = build_request(
        image=portrait, audio=speech_paths, masks=mask_paths, output=out / "demo.mp4", preset=preset, checkpoint=checkpoint, seed=seed,
        prompt=GROUP_PROMPT, height=size, width=size * people,
    )
    with step_progress("sampling", enabled=not (state.quiet or json_out)) as progress:
        result = run_generate(request, progress=progress)
    scores = score_group_demo(result.output, group, voices, seed, truth=not audio)
    summary = {
        **result.as_dict(),
        **scores,
        "portrait": str(portrait),
        "audio": [str(p) for p in speech_paths],
        "masks": [str(p) for p in mask_paths],
        "group_seed": group_seed,
        "faces": [face.as_dict() for face in group.faces],
        "weights": result.info.get("weights", preset),
        "note": _notes(note, result.info["warnings"]),
    }
    if _save_summary(out, summary, json_out):
        return
    typer.echo(f"portrait: {portrait}\nvideo:    {result.output} ({result.num_frames} frames, {result.duration:.2f} s, {result.seconds:.1f} s to make)")
    for person in scores["people"]:
        cross = ", ".join(f"{r:.2f}" for r in person["lipsync_r_cross"])
        drawn = ""
        if "drawn_lipsync_r_cross" in person:
            drawn = f"; the drawn clip: {person['drawn_lipsync_r']:.2f} own, " + ", ".join(f"{r:.2f}" for r in person["drawn_lipsync_r_cross"]) + " others'"
        typer.echo(
            f"person {person['person']}: r = {person['lipsync_r']:.2f} with their own voice, r = {cross} with the others' "
            f"(chance {person['lipsync_r_mismatched']:.2f}{drawn})"
        )
    typer.echo(f"binding: every own r > every cross r: {scores['binds']} (lowest own {scores['lipsync_r_min']:.2f}, highest cross {scores['lipsync_r_cross_max']:.2f})")
    if note:
        typer.echo(note)


def score_group_demo(video_path: Path, group: DrawnGroup, voices: list[np.ndarray], seed: int, truth: bool = False) -> dict:
    """Per person, read back from the MP4: the mouth in their own slot against their own voice
    (`lipsync_r`), against every other person's voice (`lipsync_r_cross`: ~chance when each person
    follows only their own voice) and against unrelated voices of the same kind (the chance level).

    With ``truth`` (the voices are the group's own) the same scores of the drawn clip, where every
    mouth follows exactly its own voice: two voices that happen to pause together correlate there
    too (up to ~0.3 over 20 s), so a cross r is read against the drawn truth's, not against 0."""
    import numpy as np

    from soul.media.video import read_video
    from soul.miniature.group import unrelated_voices
    from soul.miniature.lipsync import score_lipsync

    reader = read_video(video_path)
    frames = reader.read_all()
    fps = float(reader.fps)
    if frames.shape[1:3] != group.frames.shape[1:3]:  # the slots are in the drawn clip's pixels
        raise ValueError(f"video {frames.shape[1:3]} is not the group's frame size {group.frames.shape[1:3]}")
    unrelated = unrelated_voices(frames.shape[0] / fps, seed)
    people = []
    for k, slot in enumerate(group.slots):
        crop = slot.crop(frames)

        def r(voice: np.ndarray) -> float:
            return score_lipsync(crop, group.faces[k], voice, fps, skip_frames=1).r  # frame 0 is the portrait

        own = score_lipsync(crop, group.faces[k], voices[k], fps, skip_frames=1)
        person = {
            "person": k,
            "lipsync_r": round(own.r, 4),
            "lipsync_lag": own.lag,
            "lipsync_r_cross": [round(r(voices[j]), 4) for j in range(len(voices)) if j != k],
            "lipsync_r_mismatched": round(float(np.mean([r(v) for v in unrelated])), 4),
        }
        if truth:
            drawn = slot.crop(group.frames)
            person["drawn_lipsync_r"] = round(score_lipsync(drawn, group.faces[k], voices[k], group.fps).r, 4)
            person["drawn_lipsync_r_cross"] = [round(score_lipsync(drawn, group.faces[k], voices[j], group.fps).r, 4) for j in range(len(voices)) if j != k]
        people.append(person)
    own_min = min(p["lipsync_r"] for p in people)
    cross_max = max(c for p in people for c in p["lipsync_r_cross"])
    return {"people": people, "lipsync_r_min": own_min, "lipsync_r_cross_max": cross_max, "binds": own_min > cross_max}


def score_demo(video_path: Path, face: object, speech: Path, seed: int) -> dict:
    """The demo's scores, read back from the written MP4 as a user (or the benchmark) would see it."""
    from soul.media.audio import MODEL_SAMPLE_RATE, load_audio
    from soul.media.video import read_video
    from soul.miniature.portrait import HELD_OUT_SEED
    from soul.miniature.scores import score_drawn_video, score_portrait

    reader = read_video(video_path)
    frames, fps, audio = reader.read_all(), float(reader.fps), load_audio(speech, MODEL_SAMPLE_RATE).samples
    scores = score_drawn_video(frames, fps, face, audio, seed)  # type: ignore[arg-type]
    scores["to_portrait"] = score_portrait(frames, fps, HELD_OUT_SEED + seed, audio)
    return {**scores, **{k: round(scores[k], 4) for k in ("lipsync_r", "lipsync_r_mismatched", "flicker")}}


def _notes(note: str, warnings: list[str]) -> str:
    return "; ".join(n for n in (note, *warnings) if n)


def _save_summary(out: Path, summary: dict, json_out: bool) -> bool:
    """Write summary.json; with --json also print it (True: the caller prints nothing else)."""
    text = json.dumps(summary, indent=2, default=_jsonable)
    (out / "summary.json").write_text(text)
    if json_out:
        typer.echo(text)
    return json_out


def _jsonable(value: object) -> object:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
