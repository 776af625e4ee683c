"""The live fMP4 stream: init first, whole fragments out as frames are encoded, sound in sync, late joiners."""

from __future__ import annotations

import io
import random

import av
import numpy as np
import pytest

from soul.media.live_stream import AUDIO_AHEAD_FRAMES, BoxSplitter, LiveMP4Stream

FPS, SR = 16, 16000


def _decode(data: bytes) -> tuple[list[tuple[float, float]], np.ndarray, float]:
    """(pts, mean level) of each frame, the sound, and the sound's start time."""
    with av.open(io.BytesIO(data)) as c:
        frames = [(float(f.pts * f.time_base), float(f.to_ndarray().mean())) for f in c.decode(video=0)]
    with av.open(io.BytesIO(data)) as c:
        parts = list(c.decode(audio=0))
    sound = np.concatenate([p.to_ndarray()[0] for p in parts]) if parts else np.zeros(0)
    return frames, sound, float(parts[0].pts * parts[0].time_base) if parts else 0.0


def _stream_with_flash_and_click(chunks: int = 5, flash: int = 24) -> tuple[LiveMP4Stream, list[tuple[str, bytes]], list[int]]:
    """A dark video with one white frame and silence with one click at the same instant; audio runs ahead."""
    units: list[tuple[str, bytes]] = []
    stream = LiveMP4Stream(lambda data, kind: units.append((kind, data)), FPS, sample_rate=SR)
    audio = np.zeros(SR * (chunks // 2 + 2), np.float32)
    at = flash * SR // FPS
    audio[at : at + 80] = 0.9
    sent, decodable, n = 0, [], 0
    for _ in range(chunks):
        ahead = min(audio.shape[0], (n + 8) * SR // FPS + 4800)  # the session holds ~0.3 s of audio more than video
        stream.write_audio(audio[sent:ahead])
        sent = ahead
        stream.write_frames(np.stack([np.full((64, 64, 3), 255 if n + i == flash else 16, np.uint8) for i in range(8)]))
        n += 8
        decodable.append(len(_decode(b"".join(d for _, d in units))[0]))
    stream.close()
    return stream, units, decodable


def test_fragments_leave_as_frames_are_encoded_and_sound_is_in_sync() -> None:
    stream, units, decodable = _stream_with_flash_and_click()
    assert [k for k, _ in units[:2]] == ["init", "media"] and all(k == "media" for k, _ in units[1:])
    assert units[0][1][4:8] == b"ftyp"
    # after each chunk of 8, every frame but the chunk's last is already out (one frame of lag)
    assert decodable == [7, 15, 23, 31, 39]
    frames, sound, start = _decode(b"".join(d for _, d in units))
    assert len(frames) == 40 and [round(t * FPS, 6) for t, _ in frames] == list(range(40))
    flash_t = next(t for t, m in frames if m > 128)
    click_t = start + int(np.argmax(np.abs(sound) > 0.3)) / SR
    assert flash_t == 1.5 and abs(click_t - flash_t) < 0.005, (flash_t, click_t)  # AAC priming dropped: same instant
    # sound runs at most AUDIO_AHEAD_FRAMES codec frames (+ the encoder's last, padded one) past the
    # picture, though the input ran 1 s further
    assert 0 <= len(sound) / SR - 40 / FPS <= ((AUDIO_AHEAD_FRAMES + 1) * 1024 + 1) / SR


def test_a_player_joining_late_starts_at_any_fragment() -> None:
    _, units, _ = _stream_with_flash_and_click()
    init = units[0][1]
    for join in (5, 17, len(units) // 2):
        frames, _, _ = _decode(init + b"".join(d for _, d in units[join:]))
        assert len(frames) >= 40 - join - 1 and frames[0][0] > 0  # no waiting for a keyframe: every frame is one


def test_box_splitter_gives_whole_boxes_from_any_pieces() -> None:
    _, units, _ = _stream_with_flash_and_click(chunks=2)
    data = b"".join(d for _, d in units)
    rng, split, boxes, i = random.Random(0), BoxSplitter(), [], 0
    while i < len(data):
        n = rng.randint(1, 300)
        boxes += split.feed(data[i : i + n])
        i += n
    assert b"".join(b for _, b in boxes) == data and [k for k, _ in boxes][:2] == ["ftyp", "moov"]
    with pytest.raises(ValueError, match="not a box"):
        BoxSplitter().feed(b"\x00\x00\x00\x04abcd")


def test_bad_frames_and_closed_streams_are_refused() -> None:
    stream = LiveMP4Stream(lambda d, k: None, FPS)
    with pytest.raises(ValueError, match="even sides"):
        stream.write_frames(np.zeros((2, 63, 64, 3), np.uint8))
    stream.close()
    opened: list[str] = []
    sized = LiveMP4Stream(lambda d, k: opened.append(k), FPS, size=(64, 64))
    assert opened == ["init"]  # a known size opens the encoders (and sends the init segment) before any frame
    with pytest.raises(ValueError, match="32x32"):
        sized.write_frames(np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="closed"):
        stream.write_audio(np.zeros(10, np.float32))
