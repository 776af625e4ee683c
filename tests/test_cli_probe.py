"""`soul probe` through the real console script: good inputs, and every bad input of the foundation issue."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest
from PIL import Image

SOUL = [sys.executable, "-m", "soul"]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SOUL, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_probe_json_describes_every_kind(media: Path) -> None:
    res = run("probe", "--json", media / "portraits" / "hallo_7.jpg", media / "audio" / "wan_sing.mp3",
              media / "audio" / "wan_prompt_16k_mono.wav", media / "clips" / "talking_face_1.mp4")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    kinds = [d["kind"] for d in data["inputs"]]
    assert kinds == ["image", "audio", "audio", "video"]
    image, mp3, wav, video = data["inputs"]
    assert image["width"] == 3511 and image["loaded_width"] == 2048
    assert mp3["channels"] == 2 and mp3["sample_rate"] == 44100
    assert wav["sample_rate"] == 16000 and wav["channels"] == 1 and wav["loudness_db"] < 0
    assert video["has_audio"] and video["num_frames"] == 135
    assert data["errors"] == []


def test_probe_table_output(media: Path) -> None:
    res = run("probe", media / "portraits" / "hallo_2.jpg")
    assert res.returncode == 0 and "exif_orientation" in res.stdout


def _bad_inputs(tmp: Path, media: Path) -> list[tuple[list[str], str]]:
    (tmp / "text.wav").write_text("hello, I am text")
    (tmp / "text.png").write_text("hello, I am text")
    with wave.open(str(tmp / "zero.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    Image.new("RGB", (1, 1)).save(tmp / "dot.png")
    return [
        ([str(tmp / "missing.wav")], "not found"),
        ([str(tmp / "text.wav")], "not a readable audio"),
        ([str(tmp / "text.png")], "not an image"),
        ([str(tmp / "zero.wav")], "no audio samples"),
        (["--as", "audio", str(media / "clips" / "full_body_dance_no_audio.mp4")], "no audio track"),
        ([str(tmp / "dot.png")], "at least 64"),
    ]


def test_each_bad_input_exits_2_quickly_with_one_clear_line(tmp_path: Path, media: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    for args, needle in _bad_inputs(tmp_path, media):
        before = set(tmp_path.rglob("*"))
        start = time.perf_counter()
        res = run("probe", *args, cwd=work)
        elapsed = time.perf_counter() - start
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert elapsed < 5.0, (args, elapsed)
        assert "Traceback" not in res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, lines
        target = args[-1]
        assert target in lines[0] and needle in lines[0], lines[0]
        assert set(tmp_path.rglob("*")) == before  # no output file of any kind
        assert not any(work.iterdir())


def test_mixed_good_and_bad_reports_both(tmp_path: Path, media: Path) -> None:
    res = run("probe", "--json", media / "audio" / "hallo_1.wav", tmp_path / "nope.png")
    assert res.returncode == 2
    data = json.loads(res.stdout)
    assert len(data["inputs"]) == 1 and len(data["errors"]) == 1


def test_usage_errors_and_debug_traceback(tmp_path: Path) -> None:
    assert run("probe").returncode == 2
    assert run("probe", "--no-such-flag", "x").returncode == 2
    (tmp_path / "t.wav").write_text("x")
    res = run("--debug", "probe", tmp_path / "t.wav")
    assert res.returncode == 2  # probe reports per file, even in debug mode


@pytest.mark.parametrize("cmd", [["--help"], ["probe", "--help"]])
def test_help_teaches_with_examples(cmd: list[str]) -> None:
    res = run(*cmd)
    assert res.returncode == 0 and "soul probe" in res.stdout
