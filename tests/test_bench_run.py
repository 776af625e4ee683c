"""Suite layout, the media suite script and the resumable runner (external-command method)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from soul.bench.media_suite import build_media_suite
from soul.bench.run import parse_method, run_suite
from soul.bench.suite import Case, load_suite, write_case_meta
from soul.errors import InputError

WRITER = """
import sys, numpy as np
from soul.media.audio import load_audio
from soul.media.image import load_image
from soul.media.video import write_video
image, audio, prompt, out = sys.argv[1:5]
if "fail" in prompt:
    sys.exit("refusing: " + prompt)
img = np.asarray(load_image(image).convert("RGB").resize((64, 64)))
a = load_audio(audio, 16000)
frames = np.stack([img] * max(2, int(a.duration * 10)))
write_video(out, frames, 10, audio=a)
with open(out + ".calls", "a") as f:
    f.write(prompt + "\\n")
"""


def _tiny_suite(tmp_path: Path, media: Path, prompts: dict[str, str]) -> Path:
    from soul.bench.media_suite import write_wav
    from soul.media.audio import load_audio
    from soul.media.image import load_image

    suite = tmp_path / "suite"
    suite.mkdir()
    wav = load_audio(media / "audio" / "wan_prompt_16k_mono.wav", 16000).samples[:16000]
    for cid, prompt in prompts.items():
        load_image(media / "portraits" / "hallo_1.jpg").resize((96, 96)).save(suite / f"{cid}.png")
        write_wav(suite / f"{cid}.wav", wav)
        write_case_meta(suite, Case(id=cid, image=suite / f"{cid}.png", audio=suite / f"{cid}.wav", prompt=prompt))
    return suite


def test_media_suite_layout(media: Path, tmp_path: Path) -> None:
    cases = build_media_suite(media, tmp_path / "s")
    loaded = load_suite(tmp_path / "s")
    assert [c.id for c in loaded] == sorted(c.id for c in cases)
    assert {c.category for c in loaded} >= {"portrait", "upper_body", "full_body"}
    longs = [c for c in loaded if c.long]
    assert len(longs) == 2 and all(not c.long for c in loaded if c not in longs)
    from soul.media.audio import load_audio

    assert load_audio(longs[0].audio, 16000).duration == pytest.approx(60.0, abs=0.01)
    meta = json.loads((tmp_path / "s" / f"{loaded[0].id}.json").read_text())
    assert meta["en_prompt"] and "category" in meta
    for c in loaded:
        assert c.image.suffix == ".png" and c.audio.suffix == ".wav"
    (duo,) = [c for c in loaded if c.speaker_audio]  # the real two-person scene, one voice each
    assert duo.category == "multi_person" and len(duo.speaker_audio) == 2
    from PIL import Image

    assert Image.open(duo.image).size == (1024, 512)
    voices = [load_audio(p, 16000).samples for p in duo.speaker_audio]
    mix = load_audio(duo.audio, 16000, normalize=False).samples
    assert mix.shape[0] == max(v.shape[0] for v in voices) and np.corrcoef(voices[0], voices[1][: voices[0].shape[0]])[0, 1] < 0.5


def test_suite_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        load_suite(tmp_path / "nope")
    (tmp_path / "a.json").write_text('{"en_prompt": "x"}')
    with pytest.raises(InputError, match="reference image missing"):
        load_suite(tmp_path)


def test_parse_method() -> None:
    assert parse_method("soul:mini", None).preset == "mini"
    assert parse_method("soul", None).name == "soul-wan22-ti2v-5b"  # the real model, never noise by default
    with pytest.raises(InputError):
        parse_method("soul", "x {image} {audio} {output}")
    with pytest.raises(InputError, match="lacks"):
        parse_method(None, "tool {image}")
    with pytest.raises(InputError):
        parse_method("other", None)


def test_run_external_command_is_resumable(media: Path, tmp_path: Path) -> None:
    suite = _tiny_suite(tmp_path, media, {"a": "a woman talks", "b": "it's a \"quoted\" prompt", "c": "please fail"})
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    method = parse_method(None, f"{sys.executable} {script} {{image}} {{audio}} {{prompt}} {{output}}", name="ext")
    out = tmp_path / "out"
    log = run_suite(suite, method, out)
    assert log["cases"]["a"]["status"] == "done" and log["cases"]["b"]["status"] == "done"
    assert log["cases"]["c"]["status"] == "failed" and "refusing" in log["cases"]["c"]["error"]
    assert not (out / "c.mp4").exists() and not list(out.glob("*.partial.mp4"))
    assert (out / "b.partial.mp4.calls").read_text().strip() == 'it\'s a "quoted" prompt'
    from soul.media.video import read_video

    r = read_video(out / "a.mp4")
    assert r.num_frames == 10 and r.has_audio
    mtime = (out / "a.mp4").stat().st_mtime_ns
    log2 = run_suite(suite, method, out)  # resumed: a and b are not regenerated, c is retried
    assert (out / "a.mp4").stat().st_mtime_ns == mtime
    assert (out / "a.partial.mp4.calls").read_text().count("\n") == 1
    assert log2["cases"]["c"]["status"] == "failed"
    assert json.loads((out / "run_log.json").read_text())["method"] == "ext"


def test_cli_bench_run_and_metrics(media: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from soul.cli import main

    suite = _tiny_suite(tmp_path, media, {"a": "hello"})
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    main(["--quiet", "bench", "run", str(suite), "--method-cmd", f"{sys.executable} {script} {{image}} {{audio}} {{prompt}} {{output}}",
          "--out", str(tmp_path / "o")])
    assert (tmp_path / "o" / "a.mp4").is_file()
    with pytest.raises(SystemExit) as err:
        main(["bench", "run", str(suite), "--out", str(tmp_path / "o")])
    assert err.value.code == 2
    main(["bench", "metrics"])
    assert "syncnet_v2.model" in capsys.readouterr().out
