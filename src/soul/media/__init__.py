"""Image, audio and video I/O and validation: the one place where user files become arrays."""

from soul.media.audio import Audio, audio_info, load_audio, normalize_loudness
from soul.media.image import fit_image, image_info, load_image
from soul.media.probe import detect_kind, probe_file
from soul.media.video import VideoReader, VideoWriter, read_video, write_video

__all__ = [
    "Audio",
    "VideoReader",
    "VideoWriter",
    "audio_info",
    "detect_kind",
    "fit_image",
    "image_info",
    "load_audio",
    "load_image",
    "normalize_loudness",
    "probe_file",
    "read_video",
    "write_video",
]
