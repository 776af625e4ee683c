"""Every shipped preset through every entry point: `pipe(...)`, `pipe.long_video(...)` and the job
behind `soul generate` give identical frames for the same seed and inputs (the battery diffusers'
PipelineTesterMixin runs for each of its pipelines, here across our three doors).

They share one settings resolver (``soul.sampling.settings``) and one chunk sampler, so a preset's
sampling (a distilled student's x0 schedule, one pass, light decoder) cannot differ between them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soul.config import load_preset
from soul.jobs.generate import build_request, load_pipeline, prepare_inputs, run_generate
from soul.media.video import VideoWriter
from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face
from soul.miniature.speech import synthesize_babble

PRESETS = ["tiny", "mini", "mini-fast"]
SEED = 7
PROMPT = "a drawn person talking"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("entry")
    portrait, speech = root / "face.png", root / "speech.wav"
    draw_face(random_face(HELD_OUT_SEED + 40), size=256).save(portrait)
    sf.write(speech, synthesize_babble(1.4, 16_000, seed=HELD_OUT_SEED + 40), 16_000)  # 1.4 s: one 81-frame chunk
    return portrait, speech


@pytest.mark.parametrize("preset", PRESETS)
def test_pipe_long_video_and_job_give_identical_frames(preset: str, inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    portrait, speech = inputs
    request = build_request(preset=preset, image=portrait, audio=[speech], prompt=PROMPT, output=tmp_path / "job.mp4", seed=SEED)

    written: list[np.ndarray] = []
    real_write = VideoWriter.write

    def record(self: VideoWriter, frames: np.ndarray) -> None:
        written.append(np.array(frames, copy=True))
        real_write(self, frames)

    monkeypatch.setattr(VideoWriter, "write", record)
    run_generate(request)
    job = np.concatenate(written)

    prepared = prepare_inputs(request, tmp_path)  # the job's own decoding of the files
    pipe, _ = load_pipeline(request, load_preset(preset))
    streamed: list[np.ndarray] = []
    long = pipe.long_video(prepared.image, prepared.model_audio, PROMPT, sink=streamed.append, seed=SEED)
    one = pipe(prepared.image, prepared.model_audio, PROMPT, generator=torch.Generator().manual_seed(SEED))

    assert long.info["num_chunks"] == 1 and job.shape[0] == long.frames > 16
    assert np.array_equal(np.concatenate(streamed), job)
    assert one.frames is not None and np.array_equal(one.frames[: job.shape[0]], job)
    config = load_preset(preset)
    assert one.info["sampler"] == config.sampling.sampler and one.info["vae"] == config.sampling.vae
    assert one.info["guidance"] is config.sampling.guidance


def test_a_distilled_preset_is_sampled_as_distilled_by_every_entry_point() -> None:
    """The bug this resolver fixed: the long-video API sampled mini-fast with 4 shifted Euler steps and guidance."""
    from soul.sampling.settings import resolve_sampling

    settings = resolve_sampling(load_preset("mini-fast"))
    assert settings.sampler == "x0" and settings.vae == "light" and not settings.guidance.enabled
    assert settings.sigmas == (1.0, 0.5, 0.0)  # the preset's distilled levels, with the final 0
    assert resolve_sampling(load_preset("mini-fast"), steps=8).steps == 8  # an explicit step count wins
