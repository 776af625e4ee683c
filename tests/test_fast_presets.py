"""Fast presets and shipped weights: `extends:` inheritance, the mini-fast / wan22-ti2v-5b-fast
sampling sections, generation that takes sampler/guidance/vae from the preset, and packed weights
(with a light decoder) that load back by name."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from PIL import Image

from soul.config import available_presets, load_preset, merge_presets
from soul.errors import InputError
from soul.jobs.generate import build_request, run_generate
from soul.miniature.model import pack
from soul.models.shipped import has_shipped_weights, shipped_files
from soul.pipelines.shipped import load_shipped_pipeline
from soul.pipelines.soul_pipeline import SoulPipeline
from soul.sampling.schedules import distilled_sigmas

torch.set_num_threads(1)


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A flat 64x64 portrait and half a second of tone: enough for one tiny chunk."""
    image = tmp_path / "face.png"
    Image.fromarray(np.full((64, 64, 3), 150, np.uint8)).save(image)
    audio = tmp_path / "speech.wav"
    t = np.arange(8000) / 16000
    sf.write(audio, (0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)
    return image, audio


# ------------------------------------------------------------------------------------ extends


def test_merge_replaces_lists_and_merges_mappings() -> None:
    parent = {"name": "p", "a": {"x": [1, 2, 3], "y": 1, "deep": {"k": 1, "j": 2}}, "b": 5}
    child = {"a": {"x": [9], "deep": {"j": 3}}, "c": None}
    assert merge_presets(parent, child) == {"name": "p", "a": {"x": [9], "y": 1, "deep": {"k": 1, "j": 3}}, "b": 5, "c": None}
    assert parent["a"]["x"] == [1, 2, 3]  # the parent is not modified


def test_child_overrides_the_parent_and_keeps_its_own_name(tmp_path: Path) -> None:
    child = _write(tmp_path / "child.yaml", {"extends": "tiny", "name": "my-tiny", "sampling": {"steps": 3}, "audio": {"layers": [1]}})
    cfg = load_preset(child)
    tiny = load_preset("tiny")
    assert cfg.name == "my-tiny"
    assert cfg.sampling.steps == 3 and cfg.audio.layers == [1]
    assert cfg.sampling.text_scale == tiny.sampling.text_scale and cfg.transformer == tiny.transformer
    # a grandchild by relative path, without a name: named after its file, not after its parents
    grand = _write(tmp_path / "grand.yaml", {"extends": "child.yaml", "sampling": {"fps": 8}})
    cfg = load_preset(grand)
    assert cfg.name == "grand" and cfg.sampling.fps == 8 and cfg.sampling.steps == 3 and cfg.audio.layers == [1]


def test_a_child_list_replaces_the_parent_list(tmp_path: Path) -> None:
    child = _write(tmp_path / "short.yaml", {"extends": "mini-fast", "sampling": {"sigmas": [0.9, 0.3]}})
    cfg = load_preset(child)
    assert cfg.sampling.sigmas == [0.9, 0.3]
    assert cfg.sampling.sampler == "x0" and cfg.weights == "mini-fast"  # the rest still inherited


def test_unknown_parent_and_cycles_are_input_errors(tmp_path: Path) -> None:
    child = _write(tmp_path / "orphan.yaml", {"extends": "no-such-preset", "sampling": {"steps": 3}})
    with pytest.raises(InputError, match=r"orphan\.yaml.*no-such-preset.*unknown preset"):
        load_preset(child)
    _write(tmp_path / "a.yaml", {"extends": "b.yaml"})
    _write(tmp_path / "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(InputError, match="extends itself"):
        load_preset(tmp_path / "a.yaml")
    with pytest.raises(InputError, match="not a preset name"):
        load_preset(_write(tmp_path / "bad.yaml", {"extends": ["tiny"]}))


@pytest.mark.parametrize("sigmas", [[0.5, 0.75], [1.5, 0.5], [1.0, 0.5, 0.0], []])
def test_preset_sigmas_are_checked_when_read(tmp_path: Path, sigmas: list[float]) -> None:
    with pytest.raises(InputError, match="sampling.sigmas"):
        load_preset(_write(tmp_path / "bad.yaml", {"extends": "tiny", "sampling": {"sigmas": sigmas}}))


# ------------------------------------------------------------------------------------ fast presets


def test_fast_presets_sample_like_the_distilled_student() -> None:
    assert {"mini-fast", "wan22-ti2v-5b-fast"} <= set(available_presets())
    from soul.training.distill import load_distill_config

    # the levels each student was distilled at: mini-fast's recipe config, and the default
    # 4-level schedule of `soul distill steps` (the public TI2V-5B students') for the 5B preset
    mini_steps = load_distill_config(Path(__file__).resolve().parents[1] / "configs/distill/mini16-steps.yaml", "steps")
    students = {"mini-fast": distilled_sigmas(mini_steps.timesteps).tolist()[:-1], "wan22-ti2v-5b-fast": distilled_sigmas().tolist()[:-1]}
    assert students["mini-fast"] == [1.0, 0.5]
    for fast, base in (("mini-fast", "mini16"), ("wan22-ti2v-5b-fast", "wan22-ti2v-5b")):
        cfg, parent = load_preset(fast), load_preset(base)
        assert cfg.name == fast
        s = cfg.sampling
        assert (s.sampler, s.sigmas, s.guidance, s.vae) == ("x0", students[fast], False, "light")
        assert (cfg.transformer, cfg.vae, cfg.audio) == (parent.transformer, parent.vae, parent.audio)
        assert (s.height, s.width, s.fps) == (parent.sampling.height, parent.sampling.width, parent.sampling.fps)
    assert load_preset("mini").weights == "mini" and load_preset("mini16").weights == "mini16" and load_preset("mini-fast").weights == "mini-fast"
    assert load_preset("mini").vae.scale_factor_spatial == 8 and load_preset("mini16").vae.scale_factor_spatial == 16
    assert load_preset("wan22-ti2v-5b-fast").weights is None and load_preset("tiny").weights is None
    assert load_preset("mini").sampling.sampler == "euler" and load_preset("mini").sampling.guidance is True


def test_soul_info_on_a_fast_preset() -> None:
    from soul.cli import main

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        main(["info", "--preset", "mini-fast", "--json"])
    report = json.loads(buffer.getvalue())
    assert report["preset"] == "mini-fast"
    assert report["parameters"]["backbone"] > 0


# ------------------------------------------------------------------------------------ generate


def test_generate_takes_sampler_guidance_and_vae_from_the_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from soul.cli import main

    image, audio = _inputs(tmp_path)
    preset = _write(tmp_path / "tiny-fast.yaml", {"extends": "tiny", "sampling": {"sampler": "x0", "sigmas": [1.0, 0.5], "guidance": False, "vae": "light"}})
    main(["generate", "--preset", str(preset), "-i", str(image), "-a", str(audio), "-o", str(tmp_path / "fast.mp4"), "--json"])
    info = json.loads(capsys.readouterr().out)["info"]
    assert (info["sampler"], info["sigmas"], info["guidance"], info["passes_per_step"], info["vae"]) == ("x0", [1.0, 0.5, 0.0], False, 1, "light")
    assert info["weights"] == "random"

    # request values win over the preset's; --steps replaces the preset's sigmas
    req = build_request(image=image, audio=[audio], output=tmp_path / "base.mp4", preset=str(preset), sampler="euler", guidance=True, vae="full", steps=2)
    info = run_generate(req).info
    assert (info["sampler"], len(info["sigmas"]), info["guidance"], info["passes_per_step"], info["vae"]) == ("euler", 3, True, 3, "full")
    assert info["sigmas"][1] != 0.5  # 2 shifted steps, not the preset's levels


def test_a_preset_naming_absent_shipped_weights_fails_before_sampling(tmp_path: Path) -> None:
    image, audio = _inputs(tmp_path)
    preset = _write(tmp_path / "trained.yaml", {"extends": "tiny", "weights": "absent-weights"})
    with pytest.raises(InputError, match=r"absent-weights\.safetensors.*--preset tiny"):
        run_generate(build_request(image=image, audio=[audio], output=tmp_path / "x.mp4", preset=str(preset)))
    assert not (tmp_path / "x.mp4").exists()


def test_the_fast_5b_preset_asks_for_a_distilled_checkpoint(tmp_path: Path) -> None:
    image, audio = _inputs(tmp_path)
    with pytest.raises(InputError, match="--checkpoint.*distilled"):
        run_generate(build_request(image=image, audio=[audio], output=tmp_path / "x.mp4", preset="wan22-ti2v-5b-fast"))


# ------------------------------------------------------------------------------------ shipped weights


def test_pack_and_load_round_trip_with_a_light_decoder(tmp_path: Path) -> None:
    pipe = SoulPipeline.from_preset("tiny", seed=3)  # not the seed load_shipped_pipeline builds with
    checkpoint = pipe.save_pretrained(tmp_path / "ckpt")
    weights = pack(checkpoint, tmp_path / "weights", {"note": "test"}, name="tiny-fast")
    assert weights == tmp_path / "weights" / "tiny-fast.safetensors"
    assert has_shipped_weights("tiny-fast", tmp_path / "weights") and not has_shipped_weights("mini", tmp_path / "weights")
    record = json.loads((tmp_path / "weights" / "tiny-fast.json").read_text())
    assert record["name"] == "tiny-fast" and record["preset"] == "tiny" and record["note"] == "test"
    assert record["light_vae"]["widths"] == list(pipe.light_vae.config.widths)

    loaded = load_shipped_pipeline("tiny-fast", weights_dir=tmp_path / "weights")
    assert loaded.light_vae is not None and loaded.light_vae.config == pipe.light_vae.config
    for key, value in pipe.light_vae.state_dict().items():
        torch.testing.assert_close(loaded.light_vae.state_dict()[key], value.half().float())
    name, param = next(iter(pipe.transformer.named_parameters()))
    torch.testing.assert_close(dict(loaded.transformer.named_parameters())[name], param.detach().half().float())
    z = torch.randn(1, 48, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    frames = loaded.decode(z, vae="light")
    assert frames.shape == (5, 64, 64, 3)
    assert np.abs(frames.astype(int) - pipe.decode(z, vae="light").astype(int)).max() <= 2  # float16 storage
    # a preset given at load time sets the pipeline's config (its sampling defaults)
    fast = load_shipped_pipeline("tiny-fast", weights_dir=tmp_path / "weights", preset=_write(tmp_path / "f.yaml", {"extends": "tiny", "name": "f"}))
    assert fast.config.name == "f"


def test_pack_without_a_light_decoder_loads_without_one(tmp_path: Path) -> None:
    pipe = SoulPipeline.from_preset("tiny", seed=1)
    pipe.light_vae = None
    pack(pipe.save_pretrained(tmp_path / "ckpt"), tmp_path / "weights", name="plain")
    assert "light_vae" not in json.loads((tmp_path / "weights" / "plain.json").read_text())
    loaded = load_shipped_pipeline("plain", weights_dir=tmp_path / "weights")
    assert loaded.light_vae is None  # not a random decoder that would draw noise silently
    with pytest.raises(InputError, match="no light decoder"):
        loaded.decode(torch.zeros(1, 48, 1, 4, 4), vae="light")


def test_missing_shipped_weights_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.safetensors.*docs/miniature\.md.*--preset tiny"):
        load_shipped_pipeline("nope", weights_dir=tmp_path)
    weights, info = shipped_files("half", tmp_path)
    weights.write_bytes(b"")
    assert not has_shipped_weights("half", tmp_path)
    with pytest.raises(InputError, match=r"half\.json"):
        load_shipped_pipeline("half", weights_dir=tmp_path)
    with pytest.raises(InputError, match="plain name"):
        load_shipped_pipeline("../elsewhere", weights_dir=tmp_path)


def test_a_student_packed_over_its_base_ships_only_what_differs(tmp_path: Path) -> None:
    base = SoulPipeline.from_preset("tiny", seed=1)
    base.light_vae = None
    pack(base.save_pretrained(tmp_path / "base"), tmp_path / "weights", name="base")
    student = SoulPipeline.from_preset("tiny", seed=1)  # same encoders and VAE, new transformer + light decoder
    with torch.no_grad():
        for p in student.transformer.parameters():
            p.add_(0.01)
    pack(student.save_pretrained(tmp_path / "student"), tmp_path / "weights", name="student", base="base")
    from safetensors.torch import load_file

    own = load_file(str(tmp_path / "weights" / "student.safetensors"))
    assert {k.split(".")[0] for k in own} == {"transformer", "light_vae"}
    assert json.loads((tmp_path / "weights" / "student.json").read_text())["base"] == "base"
    loaded = load_shipped_pipeline("student", weights_dir=tmp_path / "weights")
    for key, value in student.vae.state_dict().items():
        torch.testing.assert_close(loaded.vae.state_dict()[key], value.half().float())
    name, param = next(iter(student.transformer.named_parameters()))
    torch.testing.assert_close(dict(loaded.transformer.named_parameters())[name], param.detach().half().float())
    (tmp_path / "weights" / "base.safetensors").unlink()
    with pytest.raises(InputError, match=r"base\.safetensors"):
        load_shipped_pipeline("student", weights_dir=tmp_path / "weights")


def test_the_8x_candidate_samples_like_mini_fast_on_mini_layout() -> None:
    """configs/distill/mini-fast-candidate.yaml (docs/miniature.md, "A first 8x mini-fast"): the
    student of mini-steps.yaml sampled as mini-fast samples, on the 8x model, with no shipped weights."""
    from soul.training.distill import load_distill_config
    from soul.training.distill_vae import DistillVAEConfig

    root = Path(__file__).resolve().parents[1] / "configs/distill"
    candidate, mini, fast = load_preset(root / "mini-fast-candidate.yaml"), load_preset("mini"), load_preset("mini-fast")
    assert candidate.weights is None and (candidate.transformer, candidate.vae, candidate.audio) == (mini.transformer, mini.vae, mini.audio)
    s, f = candidate.sampling, fast.sampling
    assert (s.sampler, s.sigmas, s.steps, s.guidance, s.vae) == (f.sampler, f.sigmas, f.steps, f.guidance, f.vae)
    steps = load_distill_config(root / "mini-steps.yaml", "steps")
    assert steps.preset == "mini" and distilled_sigmas(steps.timesteps).tolist()[:-1] == s.sigmas
    sampled = DistillVAEConfig(**yaml.safe_load((root / "mini-vae-sampled.yaml").read_text()))
    assert sampled.sampled_from == steps.output + "/export" and sampled.sampled_preset == "configs/distill/mini-fast-candidate.yaml"
