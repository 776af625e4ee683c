"""benchmarks/speed.py --quality: the equal-quality decision on synthetic numbers (it must be able to fail)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def speed():
    return load_benchmark("speed")


def measures(r: float = 0.80, identity: float = 0.040, colour: float = 1.00, flicker: float = 0.40) -> dict[str, float]:
    return {"lipsync_r": r, "lipsync_r_mismatched": 0.08, "identity_distance": identity, "colour_drift": colour, "flicker": flicker,
            "colour_difference": 2.0, "identity_drift": 0.01}


BASES = {"base": measures(r=0.78, identity=0.041), "base-50": measures(r=0.80, identity=0.040, colour=1.05)}
SECONDS = {"base": 10.0, "base-50": 25.0, "fast": 1.0, "slow-fast": 5.0, "bad": 0.5}


def test_bounds_are_five_percent_of_the_best_base_per_measure(speed) -> None:
    # best r 0.80 (base-50) -> bound 0.76; best identity 0.040 -> 0.042; best colour 1.00 (base) -> 1.05; flicker 0.40 -> 0.42
    assert speed.equal_quality(measures(r=0.761, identity=0.0419, colour=1.049, flicker=0.419), BASES) == []
    fails = speed.equal_quality(measures(r=0.759, identity=0.0421, colour=1.051, flicker=0.421), BASES)
    assert [f[0] for f in fails] == ["lipsync_r", "identity_distance", "colour_drift", "flicker"]
    assert fails[0][2] == pytest.approx(0.76) and fails[1][2] == pytest.approx(0.042)
    assert fails[2][2] == pytest.approx(1.05) and fails[3][2] == pytest.approx(0.42)
    # better than every base is fine; the reported-only measures never fail
    assert speed.equal_quality({**measures(r=0.9, identity=0.01), "lipsync_r_mismatched": 0.9, "identity_drift": 1.0}, BASES) == []
    assert speed.equal_quality(measures(r=float("nan")), BASES)[0][0] == "lipsync_r"


def test_verdict_lines_pass_fail_and_headline(speed) -> None:
    means = {**BASES, "fast": measures(r=0.79), "slow-fast": measures(), "bad": measures(r=0.10, flicker=0.9)}
    lines = speed.verdict_lines(means, SECONDS, control="bad")
    assert "speedup_equal_quality mini16 fast: 10.0x (vs base: 10.00 s / 1.00 s; vs base-50 25.0x)" in lines
    assert "speedup_equal_quality mini16 slow-fast: 2.0x (vs base: 10.00 s / 5.00 s; vs base-50 5.0x)" in lines
    assert "not_equal_quality mini16 bad (negative control): lipsync_r 0.1000 vs >= 0.7600" in lines
    assert "not_equal_quality mini16 bad (negative control): flicker 0.9000 vs <= 0.4200" in lines
    assert lines[0] == "bases mini16: speed-ups against base, the preset's default (10.00 s); against the best of the bases: base at equal quality; base-50 at equal quality"
    assert lines[-1] == "speedup_equal_quality mini16: 10.0x (fast, vs base)"
    # a negative control that passes is flagged and never becomes the headline
    lines = speed.verdict_lines({**BASES, "bad": measures()}, SECONDS, control="bad")
    assert any(line.startswith("WARNING: the negative control bad passed") for line in lines)
    assert lines[-1] == "speedup_equal_quality mini16: none within 5 %"
    # a base that is itself slightly worse still sets the ratio: the bar is against the preset's default
    lines = speed.verdict_lines({"base": measures(r=0.60), "base-50": measures(r=0.80), "fast": measures(r=0.80)}, SECONDS)
    assert lines[0].endswith("base fails lipsync_r 0.6000 vs 0.7600; base-50 at equal quality")
    assert lines[-1] == "speedup_equal_quality mini16: 10.0x (fast, vs base)"


def test_nothing_passes_gives_none(speed) -> None:
    means = {**BASES, "fast": measures(identity=0.05), "fast-1": measures(r=0.5)}
    lines = speed.verdict_lines(means, SECONDS)
    assert lines[-1] == "speedup_equal_quality mini16: none within 5 %"
    assert not any(line.startswith("speedup_equal_quality mini16 fast") for line in lines)


def test_speech_stretches_differ_per_face(speed, tmp_path) -> None:
    tracks, source = speed.speech_stretches(3, 0.5, tmp_path)  # no media here: held-out babble
    assert source == "babble" and len(tracks) == 3 and all(t.shape == (8000,) for t in tracks)
    assert not np.allclose(tracks[0], tracks[1])
    media = tmp_path / "media"
    (media / "audio").mkdir(parents=True)
    import soundfile as sf

    sf.write(media / "audio" / "hallo_3.wav", np.sin(np.arange(16_000) / 7.0).astype(np.float32) * np.linspace(0, 1, 16_000, dtype=np.float32), 16_000)
    tracks, source = speed.speech_stretches(4, 1.0, media)  # one second of speech, 1 s stretches: rotations
    assert source.startswith("audio/hallo_3.wav") and all(t.shape == (16_000,) for t in tracks)
    assert all(not np.allclose(tracks[i], tracks[j]) for i in range(4) for j in range(i))


def test_face_seeds_are_held_out_and_clear_of_decision_seeds(speed) -> None:
    from soul.miniature.portrait import HELD_OUT_SEED

    assert speed.QUALITY_FACE_SEED >= HELD_OUT_SEED + 100  # the eval / demo benchmarks use HELD_OUT_SEED + 0..~80
    for spent in (speed.SELECTION_FACE_SEED, *speed.SPENT_REPORT_FACE_SEEDS):  # report faces never among faces looked at
        assert abs(speed.QUALITY_FACE_SEED - spent) >= speed.QUALITY_FACES
    names = [c.name for c in speed.quality_configs()]
    assert names[:2] == ["base", "base-50"] and speed.NEGATIVE_CONTROL in names


def test_extra_rows_are_candidates_before_the_negative_control(speed, tmp_path: Path) -> None:
    configs = speed.quality_configs(extra=[f"dmd={tmp_path}@1.0,0.5", f"traj={tmp_path}"])
    names = [c.name for c in configs]
    assert names[-3:] == ["dmd", "traj", speed.NEGATIVE_CONTROL]
    dmd = configs[-3]
    assert dmd.checkpoint == str(tmp_path) and dmd.overrides == {"sigmas": [1.0, 0.5]} and dmd.preset == "mini-fast"
    assert configs[-2].overrides == {}
    for bad in ("dmd", f"base={tmp_path}", f"x={tmp_path / 'missing'}"):
        with pytest.raises(SystemExit, match="--extra"):
            speed.extra_config(bad)


def test_another_pair_puts_its_presets_on_every_row_and_needs_the_candidates_weights(speed, tmp_path: Path) -> None:
    """`--base mini --fast-preset FILE --fast-checkpoint DIR`: a candidate student of another model."""
    configs = speed.quality_configs(str(tmp_path), [f"alt={tmp_path}"], base="mini", fast="fast8.yaml")
    assert [c.preset for c in configs] == ["mini", "mini", *["fast8.yaml"] * 5]
    assert all(c.checkpoint == str(tmp_path) for c in configs[2:]) and configs[0].checkpoint is None
    assert speed.verdict_lines({**BASES, "fast": measures()}, SECONDS, model="mini")[-1] == "speedup_equal_quality mini: 10.0x (fast, vs base)"
    with pytest.raises(SystemExit, match="--fast-preset fast8.yaml: give its weights with --fast-checkpoint"):
        speed.main(["--configs", "mini16", "--no-timing", "--fast-preset", "fast8.yaml"])
