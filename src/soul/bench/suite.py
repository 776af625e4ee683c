"""Benchmark suites in the Soul-Bench folder layout.

A suite is a folder of cases that share an id: `<id>.png` (reference portrait), `<id>.wav`
(driving audio) and `<id>.json` (`en_prompt`, plus our optional fields `category`,
`ground_truth` video and `long` flag). Keeping Soul-Bench's layout means its public data
(APRIL-AIGC/Soul-Bench) scores here unchanged, and our suites score in its evaluator.
Generated outputs live in another folder as `<id>.mp4`.

A multi-person case keeps `<id>.wav` as the mix (what a single-track method gets) and lists one
track per person, left to right as they stand in the image, in `speaker_audio`: Soul gets the
tracks, and scoring checks that each person's mouth follows their own track (`soul.bench.people`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from soul.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".m4a", ".ogg")
LONG_CASE_SECONDS = 30.0


@dataclass
class Case:
    """One benchmark case: what a method gets (image, audio, prompt) and how it is grouped."""

    id: str
    image: Path
    audio: Path
    prompt: str = ""
    category: str = "uncategorised"
    ground_truth: Path | None = None
    long: bool = False
    speaker_audio: list[Path] = field(default_factory=list)  # one track per person, left to right; [] = one person
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["image"] = str(self.image)
        out["audio"] = str(self.audio)
        out["ground_truth"] = str(self.ground_truth) if self.ground_truth else None
        out["speaker_audio"] = [str(p) for p in self.speaker_audio]
        return out


def _find(folder: Path, case_id: str, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        path = folder / f"{case_id}{suffix}"
        if path.is_file():
            return path
    return None


def _speaker_audio(folder: Path, meta_path: Path, value: Any) -> list[Path]:
    """`speaker_audio` as paths (relative to the suite folder or absolute), each checked to exist."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) and v for v in value):
        raise InputError(meta_path, "speaker_audio must list two or more audio files, one per person (left to right)",
                         'e.g. "speaker_audio": ["<id>.0.wav", "<id>.1.wav"]; leave it out for a one-person case')
    paths = [Path(v) if Path(v).is_absolute() else folder / v for v in value]
    for k, path in enumerate(paths):
        if not path.is_file():
            raise InputError(path, f"speaker audio of person {k} missing (listed in {meta_path.name})",
                             "put the file there, or fix its path in speaker_audio (relative to the suite folder)")
    return paths


def load_case(folder: Path, case_id: str) -> Case:
    """Read `<id>.json` and find its image and audio; a missing file is an input error."""
    meta_path = folder / f"{case_id}.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(meta_path, f"cannot read case metadata: {err}", "write JSON with at least en_prompt") from None
    if not isinstance(meta, dict):
        raise InputError(meta_path, "must hold a JSON object", 'e.g. {"en_prompt": "A woman talks."}')
    image = _find(folder, case_id, IMAGE_SUFFIXES)
    audio = _find(folder, case_id, AUDIO_SUFFIXES)
    if image is None:
        raise InputError(folder / f"{case_id}.png", "reference image missing", "every case needs <id>.png beside <id>.json")
    if audio is None:
        raise InputError(folder / f"{case_id}.wav", "driving audio missing", "every case needs <id>.wav beside <id>.json")
    gt = meta.get("ground_truth")
    gt_path = None
    if gt:
        gt_path = Path(gt) if Path(gt).is_absolute() else folder / gt
    known = {"en_prompt", "prompt", "category", "ground_truth", "long", "speaker_audio"}
    return Case(
        id=case_id,
        image=image,
        audio=audio,
        prompt=str(meta.get("en_prompt", meta.get("prompt", ""))),
        category=str(meta.get("category", "uncategorised")),
        ground_truth=gt_path,
        long=bool(meta.get("long", False)),
        speaker_audio=_speaker_audio(folder, meta_path, meta.get("speaker_audio")),
        extra={k: v for k, v in meta.items() if k not in known},
    )


def load_suite(folder: str | Path) -> list[Case]:
    """All cases of a suite folder, sorted by id (one case per `<id>.json`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "suite folder not found", "give a folder of <id>.png/<id>.wav/<id>.json cases")
    ids = sorted(p.stem for p in folder.glob("*.json") if p.name != "evaluation_results.json" and not p.name.startswith("_"))
    if not ids:
        raise InputError(folder, "holds no <id>.json cases", "build one with scripts/make_media_suite.py")
    return [load_case(folder, i) for i in ids]


def write_case_meta(folder: Path, case: Case) -> Path:
    """Write `<id>.json` in Soul-Bench's shape (en_prompt) plus our optional fields."""
    meta: dict[str, Any] = {"en_prompt": case.prompt, "category": case.category, "long": case.long}
    if case.ground_truth is not None:
        meta["ground_truth"] = str(case.ground_truth)
    if case.speaker_audio:
        meta["speaker_audio"] = [_suite_relative(folder, p) for p in case.speaker_audio]
    meta.update(case.extra)
    path = folder / f"{case.id}.json"
    path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _suite_relative(folder: Path, path: Path) -> str:
    """A path inside the suite folder as written relative to it (the suite moves as one), else as given."""
    try:
        return Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return str(path)


def output_for(outputs: Path, case_id: str) -> Path:
    """Where a method's video for a case lives: `<outputs>/<id>.mp4`."""
    return Path(outputs) / f"{case_id}.mp4"
