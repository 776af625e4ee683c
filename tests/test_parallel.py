"""Multi-process inference (soul.parallel): the frames of N CPU processes are those of one process.

Exact (``np.array_equal`` / ``torch.equal``) everywhere but one place:

- guidance (CFG) parallelism runs whole passes and sums them with the same weights in the same
  order as one process: bit-identical, whatever the model;
- Ulysses runs every linear layer on a shard of the rows (S/U tokens instead of S) and every
  self-attention on a shard of the heads. Attention per head is bit-identical here, but a float32
  matrix product is only bit-identical across row counts when the BLAS picks the same kernel for
  both: this CPU's MKL sgemm does for the tiny preset's widths (32 / 64), not for mini's (256 in,
  1024 hidden: e.g. ``x[:10] @ W.T`` and ``(x @ W.T)[:10]`` differ in the last bit, and so do the
  2-row runs of a partly held latent frame). So tiny with Ulysses is compared exactly and mini
  with Ulysses within float32 rounding: latents within ``MINI_ULYSSES_ATOL`` (seen: 4e-6 on
  values up to 4), decoded frames within one uint8 level on at most ``MINI_ULYSSES_FRAME_SHARE`` of
  the values (seen: 4 of 589,824), and the same codebook decisions. A routing error (audio tokens
  of the wrong frame or speaker) changes latents by orders of magnitude more.

The torchrun launches cost most of the time (each process imports torch and diffusers), so one
launch of ``tests/helpers/parallel_generate.py`` runs several layouts; the one-process references
run in this process.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from soul.errors import InputError
from soul.parallel.cfg import check_guidance_degree, pass_slots
from soul.parallel.runtime import ParallelRuntime
from soul.parallel.spec import ParallelSpec
from soul.parallel.ulysses import FrameRun, all_to_all_bytes, frame_runs
from tests.helpers.parallel_generate import forward_output, record_generate

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "tests" / "helpers" / "parallel_generate.py"
README_MARK = "<!-- tests/test_parallel.py runs this command as written -->"
MINI_ULYSSES_ATOL = 1e-4
MINI_ULYSSES_FRAME_SHARE = 1e-3


def free_port() -> int:
    with socket.socket() as probe:  # a free port: a fixed one can still be held by an earlier run
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def env() -> dict[str, str]:
    return {
        **os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


def torchrun(nproc: int, *args: str | Path, cwd: Path | None = None, timeout: int = 240) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(free_port()), *map(str, args)]
    res = subprocess.run(cmd, env=env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-4000:]


def make_inputs(folder: Path, seconds: float = 3.0) -> dict[str, Path]:
    """A drawn held-out portrait, two babble tracks, and left / right masks for two speakers."""
    import soundfile as sf

    from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face
    from soul.miniature.speech import synthesize_babble

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"image": folder / "face.png", "a": folder / "a.wav", "b": folder / "b.wav", "left": folder / "left.png", "right": folder / "right.png"}
    draw_face(random_face(HELD_OUT_SEED + 3), size=256).save(paths["image"])
    sf.write(paths["a"], synthesize_babble(seconds, 16000, seed=HELD_OUT_SEED + 3), 16000)
    sf.write(paths["b"], synthesize_babble(seconds, 16000, seed=HELD_OUT_SEED + 4), 16000)
    left = np.zeros((64, 64), np.uint8)
    left[:, :32] = 255
    Image.fromarray(left).save(paths["left"])
    Image.fromarray(255 - left).save(paths["right"])
    return paths


def load(prefix: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    return np.load(f"{prefix}.frames.npy"), np.load(f"{prefix}.latents.npy"), json.loads(Path(f"{prefix}.json").read_text())


def assert_same_run(prefix: Path, reference: Path, *, exact: bool = True) -> dict[str, Any]:
    """The frames given to the writer and the chunk latents equal one process's (see the module doc for ``exact``)."""
    frames, latents, summary = load(prefix)
    ref_frames, ref_latents, ref_summary = load(reference)
    assert frames.shape == ref_frames.shape and frames.shape[0] == 48  # 3 s at 16 fps, 5 chunks
    assert latents.shape == ref_latents.shape
    if exact:
        assert np.array_equal(frames, ref_frames), f"{prefix.name}: frames differ from one process"
        assert np.array_equal(latents, ref_latents), f"{prefix.name}: latents differ from one process"
    else:
        assert np.abs(latents - ref_latents).max() <= MINI_ULYSSES_ATOL, f"{prefix.name}: latents differ beyond float32 rounding"
        diff = np.abs(frames.astype(np.int16) - ref_frames.astype(np.int16))
        assert diff.max() <= 1 and (diff > 0).mean() <= MINI_ULYSSES_FRAME_SHARE, f"{prefix.name}: frames differ beyond rounding"
    assert [(c["index"], c["replaced_fraction"]) for c in summary["chunks"]] == [(c["index"], c["replaced_fraction"]) for c in ref_summary["chunks"]]
    return summary


# ---------------------------------------------------------------------------------- no processes


def test_spec_is_parsed_and_checked() -> None:
    assert ParallelSpec.parse("ulysses=2,cfg=3") == ParallelSpec(2, 3)
    assert ParallelSpec.parse(" cfg=2 ") == ParallelSpec(1, 2) and ParallelSpec.parse("cfg=2").world_size == 2
    assert ParallelSpec.parse("ulysses=4").world_size == 4
    for bad, needle in [("ulysses=0", ">= 1"), ("ring=2", "ulysses=N or cfg=N"), ("ulysses=two", "not a whole number"),
                        ("ulysses=2,ulysses=2", "twice"), ("", "names no degree"), ("ulysses", "ulysses=N")]:
        with pytest.raises(InputError, match=needle):
            ParallelSpec.parse(bad)


def test_frame_runs_cut_a_shard_at_frame_boundaries() -> None:
    # 5 frames of 4 tokens split in 2: rank 0 holds frames 0-1 and half of 2, rank 1 the rest
    assert frame_runs(0, 10, 4) == [FrameRun(0, 2, 0, 4), FrameRun(2, 1, 0, 2)]
    assert frame_runs(10, 10, 4) == [FrameRun(2, 1, 2, 2), FrameRun(3, 2, 0, 4)]
    assert frame_runs(5, 2, 4) == [FrameRun(1, 1, 1, 2)]  # inside one frame
    assert frame_runs(3, 9, 4) == [FrameRun(0, 1, 3, 1), FrameRun(1, 2, 0, 4)]
    for start, length, per in [(0, 20, 4), (7, 13, 5), (1, 1, 3), (11, 40, 6)]:
        runs = frame_runs(start, length, per)
        assert sum(r.length for r in runs) == length and len(runs) <= 3
        covered = [f * per + r.row + i for r in runs for f in range(r.frame, r.frame + r.frames) for i in range(r.rows)]
        assert covered == list(range(start, start + length))


def test_layout_checks_come_before_any_model() -> None:
    runtime = ParallelRuntime(spec=ParallelSpec(ulysses=2, cfg=2), rank=0, world_size=4, device=torch.device("cpu"), mesh=None)
    runtime.check(heads=2, num_passes=3, chunk_tokens=[20, 20, 16])
    with pytest.raises(InputError, match="does not divide the model's 3 attention heads"):
        runtime.check(heads=3, num_passes=3, chunk_tokens=[20])
    with pytest.raises(InputError, match="cannot split chunks of 15 tokens"):
        runtime.check(heads=2, num_passes=3, chunk_tokens=[20, 15])
    with pytest.raises(InputError, match="cfg=2 but guidance runs 1 pass"):
        check_guidance_degree(2, 1)
    assert pass_slots(3, 2) == 2 and pass_slots(2, 2) == 1
    # q, k, v and the output: 4 all-to-alls of a [1, 10, 2, 16] float32 shard, half of each sent
    assert all_to_all_bytes(batch=1, tokens=20, heads=2, head_dim=16, degree=2, element_size=4) == 4 * 10 * 2 * 16 * 4 // 2


def test_parallel_outside_torchrun_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_cli_generate import cli

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    paths = make_inputs(tmp_path)
    code, _, err = cli("generate", "--preset", "tiny", "--image", paths["image"], "--audio", paths["a"], "-o", tmp_path / "x.mp4", "--parallel", "ulysses=2")
    assert code == 2 and "needs 2 processes and this is a single process" in err and "torchrun --nproc_per_node 2" in err
    code, _, err = cli("generate", "--preset", "tiny", "--image", paths["image"], "--audio", paths["a"], "-o", tmp_path / "x.mp4", "--parallel", "ulysses=2;cfg=2")
    assert code == 2 and "--parallel" in err
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun without --parallel: two copies would write one file
    code, _, err = cli("generate", "--preset", "tiny", "--image", paths["image"], "--audio", paths["a"], "-o", tmp_path / "x.mp4")
    assert code == 2 and "torchrun launched 2 processes but --parallel is not given" in err
    assert not (tmp_path / "x.mp4").exists()


# ------------------------------------------------------------------------------ real processes


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_inputs(tmp_path_factory.mktemp("parallel-inputs"))


@pytest.fixture(scope="module")
def talking_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint whose audio layers do something (fresh ones add exactly zero)."""
    from soul.pipelines.soul_pipeline import SoulPipeline

    pipe = SoulPipeline.from_preset("tiny")
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for layer in pipe.transformer.audio_layers.values():
            weight = layer.attn.to_out[0].weight
            weight.copy_(torch.randn(weight.shape, generator=g) * 0.5)
    return pipe.save_pretrained(tmp_path_factory.mktemp("talking-tiny") / "ckpt")


def readme_command() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split(README_MARK, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.slow
def test_readme_torchrun_command_matches_one_process(inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's command as written (2 CPU processes, Ulysses 2, tiny, 5 chunks) vs the same without torchrun."""
    from soul.media.video import read_video
    from tests.test_cli_generate import cli

    line = readme_command()
    assert line.startswith("torchrun --nproc_per_node 2 -m soul generate") and "--parallel ulysses=2" in line
    for name, path in (("portrait.png", inputs["image"]), ("speech.wav", inputs["a"])):
        (tmp_path / name).symlink_to(path)
    res = subprocess.run(["bash", "-c", line], cwd=tmp_path, env={**env(), "PET_MASTER_PORT": str(free_port())}, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-4000:]
    out = Path(tmp_path / shlex.split(line)[shlex.split(line).index("-o") + 1])
    assert res.stdout.count("wrote") == 1  # rank 0 alone speaks and writes
    # one process: the same arguments without torchrun and --parallel
    args = shlex.split(line)[shlex.split(line).index("generate") :]
    cut = args.index("--parallel")
    args = args[:cut] + args[cut + 2 :]
    args[args.index("-o") + 1] = str(tmp_path / "one.mp4")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(*args)
    assert code == 0, err
    parallel, one = read_video(out).read_all(), read_video(tmp_path / "one.mp4").read_all()
    assert parallel.shape == one.shape and parallel.shape[0] == 48
    assert np.array_equal(parallel, one)
    assert out.read_bytes() == (tmp_path / "one.mp4").read_bytes()  # x264 without mbtree: same frames, same bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.mp4", out.name, "portrait.png", "speech.wav"]  # nothing else left


@pytest.mark.slow
def test_ulysses_and_guidance_parallel_match_one_process(inputs: dict[str, Path], talking_tiny: Path, tmp_path: Path) -> None:
    """One 2-process launch: tiny CFG 2 (3 passes: 2 + 1), tiny two speakers Ulysses 2 with live audio
    layers, mini Ulysses 2 and CFG 2 (shipped weights, drawn portrait), a resumed run, and one
    transformer call per preset with audio (2 speakers, masks, clean prefix, shards ending inside a frame)."""
    from soul.jobs.generate import build_request, run_generate

    common = {"image": str(inputs["image"]), "audio": [str(inputs["a"])], "chunk_frames": 17, "seed": 3}
    tiny = {"preset": "tiny", "steps": 2, **common}
    duo = {**tiny, "checkpoint": str(talking_tiny), "audio": [str(inputs["a"]), str(inputs["b"])], "masks": [str(inputs["left"]), str(inputs["right"])]}
    mini = {"preset": "mini", "steps": 4, **common}
    refs = {name: tmp_path / f"{name}-one" for name in ("tiny", "duo", "mini")}
    for name, request in (("tiny", tiny), ("duo", duo), ("mini", mini)):
        record_generate({**request, "output": str(tmp_path / f"{name}-one.mp4")}, None, refs[name])
    jobs = [
        ({"kind": "generate", "request": {**request, "output": str(tmp_path / f"{name}.mp4")}, "parallel": parallel, "out": str(tmp_path / name)}, refs[ref])
        for name, request, parallel, ref in [("tiny-cfg", tiny, "cfg=2", "tiny"), ("duo-ulysses", duo, "ulysses=2", "duo"),
                                             ("mini-ulysses", mini, "ulysses=2", "mini"), ("mini-cfg", mini, "cfg=2", "mini")]
    ]
    tiny_ref = refs["tiny"]
    # a run that died after two chunks, finished by 2 processes: rank 0 reads the state, rank 1 gets it

    class Crash(RuntimeError):
        pass

    def crash(record: dict[str, Any]) -> None:
        if record["index"] == 1:
            raise Crash

    with pytest.raises(Crash):
        run_generate(build_request(**tiny, output=tmp_path / "resumed.mp4"), on_chunk=crash)
    jobs.append(({"kind": "generate", "request": {**tiny, "output": str(tmp_path / "resumed.mp4")}, "parallel": "ulysses=2",
                  "out": str(tmp_path / "resumed")}, tiny_ref))
    for preset in ("tiny", "mini"):
        jobs.append(({"kind": "forward", "preset": preset, "parallel": "ulysses=2", "out": str(tmp_path / f"forward-{preset}")}, None))
    for name, hook in (("forward-one-speaker", True), ("forward-no-audio-hook", False)):  # and the negative control
        jobs.append(({"kind": "forward", "preset": "tiny", "parallel": "ulysses=2", "streams": 1, "audio_hook": hook, "out": str(tmp_path / name)}, None))
    (tmp_path / "jobs.json").write_text(json.dumps([job for job, _ in jobs]))

    torchrun(2, HELPER, tmp_path / "jobs.json")

    for job, ref in jobs[:4]:
        summary = assert_same_run(Path(job["out"]), ref, exact=not Path(job["out"]).name == "mini-ulysses")
        assert summary["info"]["parallel"]["world_size"] == 2
    assert load(tmp_path / "tiny-cfg")[2]["info"]["passes_per_step"] == 3  # split 2 + 1 over the ranks
    assert load(tmp_path / "duo-ulysses")[2]["info"]["num_streams"] == 2
    frames, _, summary = load(tmp_path / "resumed")
    assert [c["resumed"] for c in summary["chunks"]] == [True, True, False, False, False]
    assert np.array_equal(frames, load(tiny_ref)[0])
    assert np.array_equal(load(tmp_path / "resumed")[1], load(tiny_ref)[1][-load(tmp_path / "resumed")[1].size :])
    assert torch.equal(torch.load(tmp_path / "forward-tiny.pt"), forward_output("tiny", None))
    one, two = forward_output("mini", None), torch.load(tmp_path / "forward-mini.pt")
    assert (one - two).abs().max() <= 1e-5 * one.abs().max()  # float32 rounding of mini's wider matmuls (module doc)
    one = forward_output("tiny", None, streams=1)
    assert torch.equal(torch.load(tmp_path / "forward-one-speaker.pt"), one)
    # negative control: without the frame-local audio hook a shard's tokens hear other frames' audio
    wrong = torch.load(tmp_path / "forward-no-audio-hook.pt")
    assert (wrong - one).abs().max() > 0.01 * one.abs().max()
    # the duo's audio layers are live (fresh ones add exactly zero): its frames are not the plain tiny ones
    assert not np.array_equal(load(refs["duo"])[0], load(tiny_ref)[0])
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".") or p.name.endswith(".soul-partial")]
    assert leftovers == []


@pytest.mark.slow
def test_ulysses_times_cfg_on_four_processes(inputs: dict[str, Path], tmp_path: Path) -> None:
    """ulysses=2,cfg=2: a 2 x 2 mesh (two sequence groups, two guidance groups) on 4 processes."""
    request = {"preset": "tiny", "steps": 2, "image": str(inputs["image"]), "audio": [str(inputs["a"])], "chunk_frames": 17, "seed": 3}
    record_generate({**request, "output": str(tmp_path / "one.mp4")}, None, tmp_path / "one")
    job = {"kind": "generate", "request": {**request, "output": str(tmp_path / "four.mp4")}, "parallel": "ulysses=2,cfg=2", "out": str(tmp_path / "four")}
    (tmp_path / "jobs.json").write_text(json.dumps([job]))
    torchrun(4, HELPER, tmp_path / "jobs.json")
    summary = assert_same_run(tmp_path / "four", tmp_path / "one")
    assert summary["info"]["parallel"] == {"ulysses": 2, "cfg": 2, "world_size": 4, "rank": 0}
