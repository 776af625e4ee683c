"""`soul generate` runs the fast sampling path: --sigmas, --sampler x0, --guidance off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from soul.cli import main


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    image = tmp_path / "face.png"
    Image.fromarray(np.full((64, 64, 3), 150, np.uint8)).save(image)
    audio = tmp_path / "speech.wav"
    t = np.arange(8000) / 16000
    sf.write(audio, (0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    return image, audio


def test_generate_with_the_distilled_schedule_and_no_guidance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image, audio = _inputs(tmp_path)
    main(["generate", "--preset", "tiny", "--image", str(image), "--audio", str(audio), "-o", str(tmp_path / "fast.mp4"), "--sigmas", "1,0.75,0.5,0.25",
          "--sampler", "x0", "--guidance", "off", "--json"])
    summary = json.loads(capsys.readouterr().out)
    info = summary["info"] if "info" in summary else summary
    assert info["sampler"] == "x0" and info["sigmas"] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert info["guidance"] is False and info["passes_per_step"] == 1
    assert (tmp_path / "fast.mp4").is_file()


@pytest.mark.parametrize("args", [["--guidance", "maybe"], ["--sigmas", "1,x"], ["--sigmas", "0.5,0.75"], ["--sampler", "ddim"]])
def test_bad_fast_path_options_are_input_errors(tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    image, audio = _inputs(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--preset", "tiny", "--image", str(image), "--audio", str(audio), "-o", str(tmp_path / "x.mp4"), *args])
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_generate_with_the_light_decoder(media: Path, tmp_path: Path) -> None:
    from soul.jobs.generate import build_request, run_generate
    from soul.media.video import read_video

    outputs = {}
    for vae in ("full", "light"):
        req = build_request(preset="tiny", image=media / "portraits" / "hallo_6.jpg", audio=[media / "audio" / "wan_prompt_16k_mono.wav"],
                            output=tmp_path / f"{vae}.mp4", steps=2, vae=vae)
        run_generate(req)
        outputs[vae] = read_video(tmp_path / f"{vae}.mp4").read_all()
    assert outputs["full"].shape == outputs["light"].shape  # same frame count and size, other decoder
    assert not np.array_equal(outputs["full"], outputs["light"])
