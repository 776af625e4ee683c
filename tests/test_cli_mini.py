"""`soul mini`: the miniature tools as subcommands (clips, train-vae, assemble, export, pack)."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.helpers.shards import shard_members

SOUL = [sys.executable, "-m", "soul"]


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SOUL, *map(str, args)], capture_output=True, text=True, timeout=300)


def in_process(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run the soul command in-process; (exit code, stdout, stderr)."""
    from soul.cli import main

    capsys.readouterr()  # only this command's output
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_mini_help_lists_every_command_with_an_example() -> None:
    res = run("mini", "--help")
    assert res.returncode == 0, res.stderr
    for command in ("clips", "train-vae", "train-audio", "assemble", "export", "pack"):
        assert command in res.stdout
    assert "soul mini clips runs/mini-data" in res.stdout
    top = run("--help")
    assert top.returncode == 0 and "mini" in top.stdout


def test_every_mini_command_help_teaches_with_an_example() -> None:
    import typer.main

    from soul.cli.app import app

    group = typer.main.get_command(app).commands["mini"]  # type: ignore[attr-defined]
    for name, command in group.commands.items():
        assert f"Example: soul mini {name} " in (command.help or ""), name
        assert all(p.help for p in command.params), name


def test_clips_writes_the_shards_write_clip_shards_writes(tmp_path: Path) -> None:
    from soul.miniature.clips import write_clip_shards

    res = run("mini", "clips", tmp_path / "cli", "--clips", "3", "--seconds", "1", "--seed", "2")
    assert res.returncode == 0, res.stderr
    shards = sorted((tmp_path / "cli" / "shards").glob("*.tar"))
    assert res.stdout.split() == [str(p) for p in shards] and len(shards) == 1
    write_clip_shards(tmp_path / "lib", 3, seconds=1.0, seed=2)
    cli, lib = shard_members(tmp_path / "cli"), shard_members(tmp_path / "lib")
    assert cli.keys() == lib.keys() and len(cli) == 9  # mp4 + wav + json per clip
    for key, value in cli.items():
        if key.endswith(".wav"):
            assert np.array_equal(value, lib[key]) and value.shape == (16_000,)  # type: ignore[union-attr]
        elif key.endswith(".json"):
            assert value == lib[key]
            meta = json.loads(value)  # type: ignore[arg-type]
            assert meta["fps"] == 16.0 and meta["width"] == 64 and meta["audio_source"] == "babble"


def test_clips_with_media_mixes_real_speech(media: Path, tmp_path: Path) -> None:
    res = run("mini", "clips", tmp_path, "--clips", "8", "--seconds", "1", "--seed", "3", "--media", media)
    assert res.returncode == 0, res.stderr
    sources = {json.loads(v)["audio_source"] for k, v in shard_members(tmp_path).items() if k.endswith(".json")}  # type: ignore[arg-type]
    assert sources == {"babble", "speech"}


def test_defaults_are_the_library_defaults() -> None:
    import typer.main

    from soul.cli.app import app
    from soul.miniature.clips import write_clip_shards
    from soul.cli.mini import VAE_FRAMINGS, VAE_TRAINABLE
    from soul.miniature.vae_trainer import FRAMINGS, TRAINABLE, VAETrainConfig
    from soul.pipelines.shipped import DEFAULT_NAME

    group = typer.main.get_command(app).commands["mini"]  # type: ignore[attr-defined]
    defaults = {name: {p.name: p.default for p in cmd.params} for name, cmd in group.commands.items()}
    cfg = VAETrainConfig()
    vae = defaults["train-vae"]
    assert vae["steps"] == cfg.max_steps and vae["minutes"] == cfg.max_minutes
    for key in ("pool_clips", "batch_size", "lr", "eval_every", "window", "eval_frames", "decode_from", "mouth_weight", "temporal_weight", "inflate", "init", "framing", "trainable", "deepen"):
        assert vae[key] == getattr(cfg, key), key
    assert vae["speech_fraction"] == cfg.speech_fraction and vae["voices"] == cfg.speech_voices and vae["media"] == cfg.speech_media
    assert (VAE_FRAMINGS, VAE_TRAINABLE) == (FRAMINGS, TRAINABLE)
    lib = inspect.signature(write_clip_shards).parameters
    for key in ("seconds", "fps", "size", "seed", "speech_fraction"):
        assert defaults["clips"][key] == lib[key].default, key
    assert defaults["pack"]["name"] == DEFAULT_NAME


@pytest.mark.parametrize(
    "args",
    [
        ["clips", "{tmp}/out", "--clips", "0"],
        ["clips", "{tmp}/out", "--seconds", "-1"],
        ["clips", "{tmp}/out", "--speech-fraction", "1.5"],
        ["clips", "{tmp}/out", "--people", "1,5"],
        ["clips", "{tmp}/out", "--media", "{tmp}/no-media"],
        ["train-vae", "{tmp}/out", "--window", "4"],
        ["train-vae", "{tmp}/out", "--eval-frames", "21"],
        ["train-vae", "{tmp}/out", "--decode-from", "median"],
        ["train-vae", "{tmp}/out", "--init", "{tmp}"],
        ["train-vae", "{tmp}/out", "--spatial-factor", "12"],
        ["train-vae", "{tmp}/out", "--deepen", "1"],
        ["clips", "{tmp}/out", "--voices", "-1"],
        ["assemble", "{tmp}/no-vae", "{tmp}/out"],
        ["train-audio", "{tmp}/out", "--media", "{tmp}/no-media"],
        ["train-vae", "{tmp}/out", "--media", "{tmp}"],
        ["train-vae", "{tmp}/out", "--voices", "5"],
        ["train-audio", "{tmp}/out", "--media", "{tmp}", "--steps", "0"],
        ["export", "{tmp}/no-init", "{tmp}", "{tmp}/out"],
        ["pack", "{tmp}/no-checkpoint"],
        ["pack", "{tmp}", "--info", "{tmp}/missing.json"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = in_process(capsys, "mini", *(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert not (tmp_path / "out").exists()


def test_a_malformed_value_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = in_process(capsys, "mini", "clips", tmp_path / "out", "--clips", "many")
    assert code == 2 and "--clips" in err
    assert not (tmp_path / "out").exists()


def test_train_vae_assemble_export_pack_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipping recipe of docs/miniature.md, end to end through `soul mini` (one training step)."""
    import torch
    from diffusers import AutoencoderKLWan
    from safetensors.torch import save_file

    from soul.pipelines.shipped import load_shipped_pipeline
    from soul.pipelines.soul_pipeline import SoulPipeline

    code, out, err = in_process(capsys, "-q", "mini", "train-vae", tmp_path / "vae-run", "--steps", "1", "--pool-clips", "1",
                                "--batch-size", "1", "--window", "1", "--eval-frames", "1")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "vae-run" / "vae")
    assert json.loads((tmp_path / "vae-run" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 1
    code, out, err = in_process(capsys, "mini", "assemble", tmp_path / "vae-run" / "vae", tmp_path / "init")
    assert code == 0, err
    init = Path(out.strip())
    # a fake training run: one checkpoint that changes one transformer weight
    pipe = SoulPipeline.from_pretrained(init, torch_dtype=torch.float32)
    name, param = next(iter(pipe.transformer.named_parameters()))
    (tmp_path / "run/checkpoints/step-000000003").mkdir(parents=True)
    save_file({name: param.detach() + 1.0}, str(tmp_path / "run/checkpoints/step-000000003/trainable.safetensors"))
    code, _, err = in_process(capsys, "mini", "export", init, tmp_path / "run", tmp_path / "export", "--step", "7")
    assert code == 2 and "no checkpoint found" in err and len(err.strip().splitlines()) == 1
    code, out, err = in_process(capsys, "mini", "export", init, tmp_path / "run", tmp_path / "export", "--step", "3")
    assert code == 0, err
    exported = Path(out.strip())
    code, _, err = in_process(capsys, "mini", "pack", exported, "--out", tmp_path / "weights", "--name", "cli-fast", "--base", "cli")
    assert code == 2 and "--base cli" in err and not (tmp_path / "weights").exists()
    (tmp_path / "info.json").write_text(json.dumps({"made_by": "test"}))
    code, out, err = in_process(capsys, "mini", "pack", exported, "--out", tmp_path / "weights", "--name", "cli", "--info", tmp_path / "info.json")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "weights" / "cli.safetensors")
    info = json.loads((tmp_path / "weights" / "cli.json").read_text())
    assert info["made_by"] == "test" and info["name"] == "cli" and info["preset"] == "mini"
    loaded = load_shipped_pipeline("cli", tmp_path / "weights")
    torch.testing.assert_close(dict(loaded.transformer.named_parameters())[name], (param.detach() + 1.0).half().float())
    trained = AutoencoderKLWan.from_pretrained(tmp_path / "vae-run" / "vae")
    assert loaded.vae.config.latents_std == pytest.approx(trained.config.latents_std)
