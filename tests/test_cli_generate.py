"""`soul generate`, `soul demo`, `soul info`, `soul download` through the CLI: outputs and precise failures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from soul.cli import main
from soul.jobs.generate import build_request, run_generate
from soul.media.video import read_video


def cli(*args: str | Path) -> tuple[int, str, str]:
    """Run the soul command in-process (saves the import time of a subprocess per case)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_generate_tiny_writes_h264_aac_matching_the_audio(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "talk.mp4"
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "soul", "generate", "--preset", "tiny", "--image", str(media / "portraits" / "hallo_6.jpg"),
         "--audio", str(media / "audio" / "wan_talk.wav"), "--prompt", "a man talking", "-o", str(out), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    elapsed = time.perf_counter() - start
    assert res.returncode == 0, res.stderr
    assert elapsed < 60
    summary = json.loads(res.stdout)
    reader = read_video(out)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"
    audio_seconds = 5.0155
    assert abs(reader.num_frames / reader.fps - audio_seconds) <= 1 / reader.fps
    assert abs(reader.read_audio().duration - audio_seconds) <= 1 / reader.fps
    assert summary["num_frames"] == reader.num_frames == 80


def test_same_seed_same_frames_other_seed_differs(media: Path, tmp_path: Path) -> None:
    def make(seed: int, name: str) -> np.ndarray:
        req = build_request(preset="tiny", image=media / "portraits" / "hallo_6.jpg", audio=[media / "audio" / "wan_prompt_16k_mono.wav"],
                            output=tmp_path / name, seed=seed, steps=2)
        run_generate(req)
        return read_video(tmp_path / name).read_all()

    a, b, c = make(3, "a.mp4"), make(3, "b.mp4"), make(4, "c.mp4")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "case,needle",
    [
        ("cat_two_voices", "no person found"),
        ("too_many_streams", "2 audio streams but 1"),
        ("bad_size", "multiples of 32"),
        ("missing_checkpoint_files", "transformer/diffusion_pytorch_model.safetensors"),
        ("too_long_audio", "longer than the maximum of 10 s"),
        ("not_mp4", ".mp4"),
    ],
)
def test_bad_generate_inputs_exit_2(media: Path, tmp_path: Path, case: str, needle: str) -> None:
    portrait, cat = media / "portraits" / "hallo_6.jpg", media / "portraits" / "wan_cat_no_human.jpg"
    talk, prompt16 = media / "audio" / "wan_talk.wav", media / "audio" / "wan_prompt_16k_mono.wav"
    out = tmp_path / "out.mp4"
    if case == "missing_checkpoint_files":
        from soul.pipelines.soul_pipeline import SoulPipeline

        SoulPipeline.from_preset("tiny").save_pretrained(tmp_path / "ckpt")
        for weights in (tmp_path / "ckpt" / "transformer").glob("*.safetensors"):
            weights.unlink()
    args: list[str | Path] = {
        "cat_two_voices": ["--image", cat, "--audio", talk, "--audio", prompt16, "-o", out],
        "too_many_streams": ["--image", portrait, "--audio", talk, "--audio", prompt16, "-o", out],
        "bad_size": ["--image", portrait, "--audio", talk, "--height", 50, "-o", out],
        "missing_checkpoint_files": ["--image", portrait, "--audio", talk, "--checkpoint", tmp_path / "ckpt", "-o", out],
        "too_long_audio": ["--image", portrait, "--audio", media / "audio" / "hallo_2.wav", "--max-duration", 10, "-o", out],
        "not_mp4": ["--image", portrait, "--audio", talk, "-o", tmp_path / "out.avi"],
    }[case]
    code, stdout, stderr = cli("generate", "--preset", "tiny", *args)
    assert code == 2, (stdout, stderr)
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("warning: preset tiny has RANDOM")]
    assert len(lines) == 1 and needle in lines[0], lines
    assert "Traceback" not in stderr
    assert not out.exists() and not list(tmp_path.glob("*.mp4"))


def video_packets(path: Path) -> list[bytes]:
    """The encoded video stream, packet by packet (container timestamps and metadata left out)."""
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def test_same_seed_twice_in_one_process_gives_byte_identical_video(media: Path, tmp_path: Path) -> None:
    """What a user re-running a command (or a resumed job) relies on: nothing but the inputs decides the bytes."""
    args = ["generate", "--preset", "tiny", "--image", media / "portraits" / "hallo_6.jpg", "--audio",
            media / "audio" / "wan_prompt_16k_mono.wav", "--steps", "2", "--seed", "3"]
    # Three runs: libx264's mbtree on AVX-512 made about every second run differ (media/video.py).
    runs = []
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        code, _, stderr = cli(*args, "-o", tmp_path / name)
        assert code == 0, stderr
        runs.append(video_packets(tmp_path / name))
    assert len(runs[0]) > 0 and runs[0] == runs[1] == runs[2]


def test_generate_defaults_to_the_real_model_and_says_how_to_get_weights(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    start = time.perf_counter()
    code, _, stderr = cli("generate", "-i", media / "portraits" / "hallo_6.jpg", "-a", media / "audio" / "wan_talk.wav", "-o", out)
    assert time.perf_counter() - start < 20
    assert code == 2 and "--preset wan22-ti2v-5b: needs downloaded weights" in stderr and "soul download" in stderr, stderr
    assert not out.exists()


def test_random_weights_and_foreign_portraits_are_announced(media: Path, tmp_path: Path) -> None:
    code, stdout, stderr = cli("generate", "--preset", "tiny", "-i", media / "portraits" / "hallo_6.jpg", "-a",
                               media / "audio" / "wan_prompt_16k_mono.wav", "--steps", "1", "-o", tmp_path / "t.mp4", "--json")
    assert code == 0, stderr
    warning = [ln for ln in stderr.splitlines() if ln.startswith("warning:")]
    assert len(warning) == 1 and "RANDOM weights" in warning[0] and "noise" in warning[0], stderr
    assert json.loads(stdout)["info"]["warnings"] == [warning[0].removeprefix("warning: ")]


def test_mini_presets_warn_only_for_portraits_they_never_saw(media: Path, tmp_path: Path) -> None:
    from soul.config import load_preset
    from soul.jobs.generate import generation_warnings
    from soul.media.image import load_image
    from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face

    for preset in ("mini", "mini16", "mini-fast"):
        config = load_preset(preset)
        photo = media / "portraits" / "hallo_6.jpg"
        request = build_request(preset=preset, image=photo, audio=[media / "audio" / "wan_talk.wav"], output=tmp_path / "x.mp4")
        notes = generation_warnings(request, config, load_image(photo))
        assert len(notes) == 1 and "drawn faces" in notes[0] and str(photo) in notes[0]
        drawn = draw_face(random_face(HELD_OUT_SEED + 3), size=512)
        assert generation_warnings(request, config, drawn) == []


def test_info_reports_5b_sizes_quickly() -> None:
    start = time.perf_counter()
    code, stdout, _ = cli("info", "--preset", "wan22-ti2v-5b", "--json")
    assert code == 0 and time.perf_counter() - start < 30
    data = json.loads(stdout)
    assert abs(data["parameters"]["backbone"] / 5.0e9 - 1) < 0.005
    assert abs(data["parameters"]["vae"] / 0.705e9 - 1) < 0.02


def test_download_fails_fast_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    code, _, stderr = cli("download", "--preset", "wan22-ti2v-5b")
    assert code == 1 and time.perf_counter() - start < 20
    assert "cannot reach the Hugging Face Hub" in stderr
    code, stdout, _ = cli("download", "--preset", "tiny")
    assert code == 0 and "nothing to download" in stdout


def test_demo_runs_offline_and_says_weights_are_random(tmp_path: Path) -> None:
    code, stdout, stderr = cli("demo", "--preset", "tiny", "--seconds", "2", "--out", tmp_path, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["weights"] == "random" and "RANDOM" in summary["note"]
    assert summary["face_seed"] == 1_000_000  # --seed 0: the first held-out person
    video = read_video(summary["output"])
    assert video.num_frames == 32 and video.has_audio
    assert (tmp_path / "portrait.png").exists() and (tmp_path / "speech.wav").exists()
    # the scores are computed on the written video, whatever the weights
    for key in ("lipsync_r", "lipsync_r_mismatched", "flicker"):
        assert -1.0 <= summary[key] <= 1.0 or key == "flicker"
    assert summary["drift"]["start_seconds"][0] == 0.0


def test_demo_with_three_people_scores_each_against_every_voice(tmp_path: Path) -> None:
    code, stdout, stderr = cli("demo", "--preset", "tiny", "--people", "3", "--seconds", "2", "--out", tmp_path, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    video = read_video(summary["output"])
    assert (video.width, video.height) == (3 * 64, 64) and video.num_frames == 32
    assert len(summary["audio"]) == len(summary["masks"]) == 3 and len(summary["faces"]) == 3
    assert [p["person"] for p in summary["people"]] == [0, 1, 2]
    for person in summary["people"]:
        assert len(person["lipsync_r_cross"]) == len(person["drawn_lipsync_r_cross"]) == 2
        assert person["drawn_lipsync_r"] > 0.8  # in the drawn clip every mouth follows its own voice
        assert all(-1.0 <= r <= 1.0 for r in (person["lipsync_r"], person["lipsync_r_mismatched"], *person["lipsync_r_cross"]))
    assert summary["binds"] == (summary["lipsync_r_min"] > summary["lipsync_r_cross_max"])
    masks = [np.asarray(Image.open(m)) > 0 for m in summary["masks"]]
    assert not (masks[0] & masks[1]).any() and np.all(masks[0] | masks[1] | masks[2])  # disjoint, cover the frame


@pytest.mark.parametrize(
    ("args", "names"),
    [(["--people", "5"], "--people 5"), (["--people", "2", "--audio", "A"], "--audio (1 given)"), (["--audio", "A", "--audio", "A"], "--audio (2 given)")],
)
def test_demo_rejects_bad_people_or_voices(tmp_path: Path, args: list[str], names: str) -> None:
    voice = tmp_path / "a.wav"
    sf.write(voice, np.zeros(16000, np.float32), 16000)
    code, _, stderr = cli("demo", "--preset", "tiny", *[str(voice) if a == "A" else a for a in args], "--out", tmp_path / "out")
    assert code == 2 and names in stderr, stderr
    assert not (tmp_path / "out" / "demo.mp4").exists()


def test_demo_rejects_bad_seconds(tmp_path: Path) -> None:
    code, _, stderr = cli("demo", "--preset", "tiny", "--seconds", "0", "--out", tmp_path)
    assert code == 2 and "--seconds" in stderr


@pytest.mark.parametrize("preset", ["tiny", "mini"])
def test_the_two_person_frame_generates_with_two_tracks(media: Path, tmp_path: Path, preset: str) -> None:
    """The first frame of the two-person clip with one track per person: people are found on the
    1024x512 frame (at 64 px wide they are a few pixels), so it generates at its own 2:1 shape;
    a square crop would cut both out and says which size keeps them."""
    with av.open(str(media / "clips" / "two_people_left_speaks.mp4")) as container:
        next(container.decode(video=0)).to_image().save(tmp_path / "two.png")
    talk, prompt16 = media / "audio" / "wan_talk.wav", media / "audio" / "wan_prompt_16k_mono.wav"
    args = ["generate", "--preset", preset, "--image", tmp_path / "two.png", "--audio", talk, "--audio", prompt16, "--max-duration", 60]
    code, _, stderr = cli(*args, "--width", 128, "--height", 64, "-o", tmp_path / "two.mp4")
    assert code == 0, stderr
    frames = read_video(tmp_path / "two.mp4").read_all()
    assert frames.shape[1:] == (64, 128, 3)
    code, _, stderr = cli(*args, "-o", tmp_path / "square.mp4")
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and "--width 128 --height 64" in lines[0], stderr
    assert not (tmp_path / "square.mp4").exists()


HOLD_OUTPUT = """
import sys, time
from pathlib import Path
from soul.jobs.resume import output_lock
with output_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_run_on_the_same_output_stops_before_touching_the_first(media: Path, tmp_path: Path) -> None:
    """Two runs on one output share its resume state: the second stops with one line, the first's chunks untouched;
    a killed run's lock (the kernel drops it) does not block the next run."""
    from soul.jobs.resume import lock_path_for, state_dir_for

    out = tmp_path / "out.mp4"
    args = ["generate", "--preset", "tiny", "--image", media / "portraits" / "hallo_6.jpg", "--audio", media / "audio" / "wan_talk.wav", "-o", out]
    state = state_dir_for(out)
    state.mkdir()
    (state / "progress.json").write_text("the first run's")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_OUTPUT, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, stdout, stderr = cli(*args)
        lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("warning: preset tiny has RANDOM")]
        assert code == 2 and len(lines) == 1 and f"is being written by another run (pid {holder.pid})" in lines[0], (stdout, stderr)
        assert (state / "progress.json").read_text() == "the first run's" and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    assert lock_path_for(out).exists()  # left by the killed holder, no longer held
    code, _, stderr = cli(*args)
    assert code == 0, stderr
    assert read_video(out).num_frames == 80 and not lock_path_for(out).exists() and not state.exists()
