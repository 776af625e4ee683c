"""Deciding what kind of input a file is and describing it with the validation generation uses."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from PIL import Image

from soul.errors import InputError
from soul.media.audio import audio_info
from soul.media.image import image_info
from soul.media.video import VideoReader

Kind = Literal["image", "audio", "video"]

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts"}


def _image_suffixes() -> set[str]:
    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def detect_kind(path: str | Path) -> Kind:
    """Guess the kind from the name; content is checked afterwards by the kind's own loader."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in _image_suffixes():
        return "image"
    raise InputError(path, f"unknown file type '{suffix or '(none)'}'", "use an image, audio or video file, or pass --as")


def probe_file(path: str | Path, kind: Kind | None = None) -> dict:
    """Describe one input; raises InputError exactly where generation would reject it."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found", "check the path")
    kind = kind or detect_kind(path)
    if kind == "image":
        return image_info(path).as_dict()
    if kind == "audio":
        return audio_info(path).as_dict()
    return VideoReader(path).info().as_dict()
