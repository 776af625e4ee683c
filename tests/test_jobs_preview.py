"""The live preview of a job: `run_generate(..., preview=...)` tees every frame batch into a fragmented MP4."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
from PIL import Image

from soul.jobs.generate import build_request, run_generate
from soul.media.video import read_video


def _inputs(tmp_path: Path, seconds: float) -> tuple[Path, Path]:
    """A plain portrait and a voiced, syllable-like tone (16 kHz mono WAV): no shared media needed."""
    yy, xx = np.mgrid[0:96, 0:96]
    face = np.stack([128 + 80 * np.sin(xx / 9), 110 + 60 * np.cos(yy / 7), 90 + 40 * np.sin((xx + yy) / 13)], -1)
    image = tmp_path / "portrait.png"
    Image.fromarray(face.clip(0, 255).astype(np.uint8)).save(image)
    t = np.arange(int(seconds * 16000)) / 16000
    voice = 0.4 * np.sin(2 * np.pi * 160 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    audio = tmp_path / "speech.wav"
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((voice * 32767).astype("<i2").tobytes())
    return image, audio


def test_preview_holds_every_frame_of_the_video_and_grows_during_the_job(tmp_path: Path) -> None:
    image, audio = _inputs(tmp_path, 3.0)
    out, preview = tmp_path / "out.mp4", tmp_path / "jobs" / "preview.mp4"
    readable_during: list[int] = []

    def look(record: dict) -> None:  # after each chunk's frames went to both writers
        readable_during.append(read_video(preview).num_frames if preview.exists() else -1)
        assert not out.exists()  # the MP4 itself still appears only when complete

    request = build_request(preset="tiny", image=image, audio=[audio], output=out, steps=2, chunk_frames=21, motion_latents=2, codebook=False)
    result = run_generate(request, on_chunk=look, preview=preview)

    assert len(result.chunks) >= 3
    assert readable_during[0] >= 0  # the preview exists from the first chunk on
    assert readable_during == sorted(readable_during) and 0 < readable_during[-1] < result.num_frames, readable_during
    final, live = read_video(out), read_video(preview)
    assert live.num_frames == final.num_frames == result.num_frames == 48  # 3 s at 16 fps
    assert live.fps == final.fps == 16 and (live.width, live.height) == (final.width, final.height)
    assert live.has_audio and abs(live.read_audio().duration - final.read_audio().duration) <= 0.15
    # the same frames, encoded twice (the preview only adds keyframes): equal up to compression
    diff = np.abs(live.read_all().astype(int) - final.read_all().astype(int))
    assert diff.mean() < 3, diff.mean()
    with av.open(str(preview)) as c:
        assert c.format.name.startswith("mov") and c.streams.video[0].codec_context.name == "h264"
    assert sorted(p.name for p in preview.parent.iterdir()) == ["preview.mp4"]


def test_without_preview_nothing_else_is_written(tmp_path: Path) -> None:
    image, audio = _inputs(tmp_path, 1.0)
    out = tmp_path / "out" / "video.mp4"
    run_generate(build_request(preset="tiny", image=image, audio=[audio], output=out, steps=1))
    assert [p.name for p in out.parent.iterdir()] == ["video.mp4"]
