"""Multi-person benchmark cases: the speaker_audio field, the run step handing the tracks to the
method, and the per-person binding measure on the real two-person clip (with a swapped-track
negative control that must not bind)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from soul.bench.media_suite import write_wav
from soul.analysis.lipsync import DEFAULT_MAX_OFFSET
from soul.bench.people import CHANCE_MARGIN, bind_people, chance_shifts
from soul.bench.run import parse_method, run_suite
from soul.bench.suite import Case, load_suite, write_case_meta
from soul.errors import InputError

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a core dependency
    pass

SR = 16_000

RECORDER = """
import json, sys
import numpy as np
from soul.media.video import write_video
image, audio, out, *speakers = sys.argv[1:]
write_video(out, np.zeros((4, 32, 32, 3), np.uint8), 10)
with open(out + ".args.json", "w") as f:
    json.dump({"audio": audio, "speakers": speakers}, f)
"""


def _tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _case(folder: Path, cid: str, speakers: list[Path] | None = None, image: np.ndarray | None = None) -> Case:
    """A case whose mix is a tone (or the mean of the speaker tracks when they are WAVs we wrote)."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8) if image is None else image).save(folder / f"{cid}.png")
    write_wav(folder / f"{cid}.wav", _tone(1.0, 220))
    case = Case(id=cid, image=folder / f"{cid}.png", audio=folder / f"{cid}.wav", prompt="two people talk",
                speaker_audio=speakers or [])
    write_case_meta(folder, case)
    return case


def test_speaker_audio_round_trips_relative_and_absolute(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    outside = tmp_path / "elsewhere.wav"
    write_wav(suite / "duo.0.wav", _tone(1.0, 300))
    write_wav(outside, _tone(1.0, 500))
    _case(suite, "duo", [suite / "duo.0.wav", outside])
    _case(suite, "solo")
    meta = json.loads((suite / "duo.json").read_text())
    assert meta["speaker_audio"] == ["duo.0.wav", str(outside)]  # inside the suite: relative, so it moves with it
    assert "speaker_audio" not in json.loads((suite / "solo.json").read_text())
    duo, solo = load_suite(suite)
    assert duo.speaker_audio == [suite / "duo.0.wav", outside] and solo.speaker_audio == []
    assert "speaker_audio" not in duo.extra
    assert duo.as_dict()["speaker_audio"] == [str(suite / "duo.0.wav"), str(outside)]


def test_missing_or_malformed_speaker_audio_is_an_input_error(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    write_wav(tmp_path / "a.wav", _tone(1.0, 300))
    _case(suite, "duo")
    meta = json.loads((suite / "duo.json").read_text())
    (suite / "duo.json").write_text(json.dumps({**meta, "speaker_audio": [str(tmp_path / "a.wav"), "duo.1.wav"]}))
    with pytest.raises(InputError, match="speaker audio of person 1 missing") as err:
        load_suite(suite)
    assert err.value.subject == str(suite / "duo.1.wav") and "speaker_audio" in (err.value.fix or "")
    (suite / "duo.json").write_text(json.dumps({**meta, "speaker_audio": "duo.0.wav"}))
    with pytest.raises(InputError, match="two or more"):
        load_suite(suite)


def test_run_gives_tracks_to_soul_and_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    tracks = [suite / "duo.0.wav", suite / "duo 1.wav"]  # a space: each track must be quoted on its own
    for k, path in enumerate(tracks):
        write_wav(path, _tone(1.0, 300 + 100 * k))
    _case(suite, "duo", tracks)
    _case(suite, "solo")
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    method = parse_method(None, f"{sys.executable} {script} {{image}} {{audio}} {{output}} {{speaker_audio}}")
    log = run_suite(suite, method, tmp_path / "ext")
    assert {c["status"] for c in log["cases"].values()} == {"done"}, log
    duo = json.loads((tmp_path / "ext" / "duo.partial.mp4.args.json").read_text())
    assert duo == {"audio": str(suite / "duo.wav"), "speakers": [str(p) for p in tracks]}
    solo = json.loads((tmp_path / "ext" / "solo.partial.mp4.args.json").read_text())
    assert solo == {"audio": str(suite / "solo.wav"), "speakers": [str(suite / "solo.wav")]}

    import soul.jobs.generate as G

    seen = {}

    def fake_generate(request: G.GenerateRequest) -> None:  # the request is built by the real build_request
        seen[request.output.name] = list(request.audio)
        request.output.write_bytes(b"video")

    monkeypatch.setattr(G, "run_generate", fake_generate)
    log = run_suite(suite, parse_method("soul:tiny", None), tmp_path / "soul")
    assert {c["status"] for c in log["cases"].values()} == {"done"}, log
    assert seen == {"duo.partial.mp4": tracks, "solo.partial.mp4": [suite / "solo.wav"]}


def _drive(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.convolve(rng.standard_normal(n + 8), np.ones(4) / 4, mode="same")[4 : 4 + n]


def test_bind_people_on_synthetic_series() -> None:
    """Mouth k is energy k two frames later plus noise: each binds to its own, not when swapped."""
    n = 150
    energies = [_drive(n, 1), _drive(n, 2), _drive(n, 3)]
    rng = np.random.default_rng(0)
    mouths = [np.roll(e, 2) + 0.3 * rng.standard_normal(n) for e in energies]
    people = bind_people(mouths, energies)
    assert [p.binds for p in people] == [True, True, True]
    for p in people:
        assert p.own > p.chance + 0.3 and p.offset == 2 and len(p.cross) == 2 and p.cross_max == max(p.cross)
    swapped = bind_people(mouths, [energies[1], energies[0], energies[2]])
    assert [p.binds for p in swapped] == [False, False, True]
    missing = bind_people([mouths[0], None], energies[:2])
    assert missing[1].own is None and missing[1].binds is None and "no face" in missing[1].note
    low = DEFAULT_MAX_OFFSET + CHANCE_MARGIN  # out of the lag search's reach
    assert all(low <= s <= n - low for s in chance_shifts(n)) and chance_shifts(30) == []


@pytest.fixture(scope="module")
def two_people_scores(media: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Score the real two-person clip as a method's output, with the right tracks, swapped tracks,
    on a one-person video (person 1 missing), and one single-person case."""
    from soul.bench.score import ScoreOptions, score_suite
    from soul.media.audio import load_audio
    from soul.media.video import read_video

    tmp = tmp_path_factory.mktemp("people")
    clips = media / "clips"
    suite, outputs = tmp / "suite", tmp / "outputs"
    suite.mkdir()
    outputs.mkdir()
    left = write_wav(suite / "left.wav", load_audio(clips / "talking_face_2.mp4", SR, normalize=False).samples)
    right = write_wav(suite / "right.wav", load_audio(clips / "talking_face_3.mp4", SR, normalize=False).samples)
    first = next(iter(read_video(clips / "two_people_left_speaks.mp4").frames(0, 1)))
    for cid, tracks, video in (("duo", [left, right], "two_people_left_speaks"), ("swapped", [right, left], "two_people_left_speaks"),
                               ("one_face", [left, right], "talking_face_2"), ("solo", None, "talking_face_2")):
        _case(suite, cid, tracks, image=first)
        shutil.copy(clips / f"{video}.mp4", outputs / f"{cid}.mp4")
    result = score_suite(suite, outputs, tmp / "scores", ScoreOptions(groups=("people",)))
    return result, tmp


def _people(result: dict, cid: str) -> list[dict]:
    case = result["cases"][cid]
    assert "error" not in case, case
    return case["people"]


def test_real_two_people_bind_to_their_own_tracks(two_people_scores: tuple[dict, Path]) -> None:
    result, _ = two_people_scores
    duo = result["cases"]["duo"]
    assert duo["people_found"] == duo["people_expected"] == 2
    left, right = _people(result, "duo")
    assert left["own"] > left["cross_max"], left  # talking_face_2's mouth follows its own audio
    assert right["own"] > right["cross_max"], right  # talking_face_3's mouth follows its own audio
    assert left["binds"] and right["binds"] and duo["people_bind_rate"] == 1.0
    assert all(isinstance(p["chance"], float) for p in (left, right))


def test_real_swapped_tracks_do_not_bind(two_people_scores: tuple[dict, Path]) -> None:
    result, _ = two_people_scores
    duo, swapped = _people(result, "duo"), _people(result, "swapped")
    for k, p in enumerate(swapped):
        assert p["own"] < p["cross_max"] and p["binds"] is False, p
        assert p["own"] == pytest.approx(duo[k]["cross"][0]) and p["cross"][0] == pytest.approx(duo[k]["own"])
    assert result["cases"]["swapped"]["people_bind_rate"] == 0.0


def test_missing_person_is_reported_and_single_cases_unchanged(two_people_scores: tuple[dict, Path]) -> None:
    result, tmp = two_people_scores
    one = result["cases"]["one_face"]
    assert one["people_found"] == 1 and one["people_expected"] == 2
    present, absent = one["people"]
    assert present["own"] is not None and absent["own"] is None and absent["binds"] is None and "no face" in absent["note"]
    assert one["people_bind_rate"] <= 0.5  # the missing person counts as not binding
    solo = result["cases"]["solo"]
    assert not [k for k in solo if k.startswith("people")] and solo["num_frames"] > 0
    entries = {Path(e["video_path"]).stem: e for e in json.loads((tmp / "scores" / "evaluation_results.json").read_text())}
    assert "soul_people" in entries["duo"]["results"] and "soul_people" not in entries["solo"]["results"]
    summary = result["summary"]
    assert summary["people_bind_rate"]["n"] == 3 and "people_found" not in summary
    assert summary["people_bind_rate"]["mean"] == pytest.approx(np.mean([result["cases"][c]["people_bind_rate"] for c in ("duo", "swapped", "one_face")]))


def test_report_has_per_person_rows(two_people_scores: tuple[dict, Path]) -> None:
    from soul.bench.report import write_report

    _, tmp = two_people_scores
    paths = write_report([tmp / "scores"], tmp / "report")
    md = paths["markdown"].read_text()
    people = md.split("## People:")[1]
    rows = [line for line in people.splitlines() if line.startswith("| duo |") or line.startswith("| swapped |")]
    assert len(rows) == 4 and sum("| yes |" in r for r in rows) == 2 and sum("| no |" in r for r in rows) == 2
    assert "people binding ↑" in md.split("## Comparison")[1].split("\n\n")[2]
    assert "<h2>People:" in paths["html"].read_text()
