"""Protocol arithmetic of the benchmark metrics against hand-computed values (no media, no weights)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from soul.bench import syncnet as S
from soul.bench.metrics import av_align_iou, evenly_spaced, local_maxima
from soul.bench.signal import ciede2000, mfcc, noise_sigma, onset_times, sharpness
from soul.bench.weighted import (
    SPECS,
    CommandQualityScorer,
    WeightsConfig,
    arcface_csim,
    clip_score_from_embeddings,
    frechet_distance,
    i3d_features,
    inception_features,
    parse_judge_score,
    skipped,
    video_segments,
    vlm_judge,
)
from soul.errors import InputError


def test_ciede2000_matches_sharma_reference_pairs() -> None:
    # Sharma, Wu & Dalal (2005) test data, pairs 1, 7 and 25.
    lab1 = np.array([[50.0, 2.6772, -79.7751], [50.0, 0.0, 0.0], [60.2574, -34.0099, 36.2677]])
    lab2 = np.array([[50.0, 0.0, -82.7485], [50.0, -1.0, 2.0], [60.4626, -34.1751, 39.4387]])
    np.testing.assert_allclose(ciede2000(lab1, lab2), [2.0425, 2.3669, 1.2644], atol=1e-4)


def test_sharpness_and_noise_react_to_blur_and_noise() -> None:
    rng = np.random.default_rng(0)
    x = np.tile((np.arange(64) // 8 % 2 * 255).astype(np.uint8)[None, :, None], (64, 1, 3))
    blurred = ((x[:, :-2].astype(float) + x[:, 1:-1] + x[:, 2:]) / 3).astype(np.uint8)
    assert sharpness(x) > sharpness(blurred) > 0
    flat = np.full((64, 64, 3), 128, np.uint8)
    noisy = np.clip(128 + rng.normal(0, 10, (64, 64, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    assert noise_sigma(flat) == pytest.approx(0.0)
    assert noise_sigma(noisy) == pytest.approx(10.0, rel=0.2)


def test_mfcc_rate_and_onsets() -> None:
    sr = 16000
    feats = mfcc(np.random.default_rng(0).normal(0, 0.1, sr).astype(np.float32), sr)
    assert feats.shape[1] == 13 and abs(feats.shape[0] - 100) <= 1  # 100 Hz, 13-dim: SyncNet's input
    x = np.zeros(3 * sr)
    for t in (0.5, 1.3, 2.2):
        i = int(t * sr)
        x[i : i + 800] = np.sin(np.arange(800) * 0.3) * np.hanning(800)
    onsets = onset_times(x, sr)
    assert len(onsets) == 3
    np.testing.assert_allclose(onsets, [0.5, 1.3, 2.2], atol=0.05)


def test_av_align_iou_greedy_one_to_one() -> None:
    assert av_align_iou(np.array([0.1, 0.5, 1.0]), np.array([0.12, 0.9, 1.02]), 0.04) == pytest.approx(2 / 4)
    assert av_align_iou(np.array([0.1, 0.11]), np.array([0.1]), 0.04) == pytest.approx(1 / 2)  # a peak matches once
    assert av_align_iou(np.array([]), np.array([]), 0.04) == 0.0
    assert list(local_maxima(np.array([0, 0.5, 0, 0.05, 0.01, 0.3, 0.2]))) == [1, 5]  # 0.05 < 0.1 is ignored


def test_evenly_spaced_sampling_is_soul_bench_16() -> None:
    idx = evenly_spaced(151, 16)
    assert len(idx) == 16 and idx[0] == 0 and idx[-1] == 150 and idx[1] == 10
    assert evenly_spaced(5, 16) == [0, 1, 2, 3, 4]


def test_syncnet_offset_arithmetic_hand_computed() -> None:
    d = S.offset_distances(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [2.0], [3.0]]), vshift=1)
    np.testing.assert_allclose(d, [1.0, 0.0, 5 / 3])
    s = S.score_from_distances(d, vshift=1)
    assert (s.offset, s.lse_d, s.lse_c) == (0, 0.0, 1.0)
    s = S.score_from_distances(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), vshift=2)
    assert (s.offset, s.lse_d, s.lse_c) == (2, 1.0, 2.0)


def test_syncnet_offset_sign_video_lagging_audio_is_positive() -> None:
    rng = np.random.default_rng(1)
    audio = rng.normal(size=(60, 8))
    video = np.roll(audio, 3, axis=0)  # v_t = a_{t-3}: the mouth shows a sound 3 frames late
    s = S.score_from_distances(S.offset_distances(video, audio, 15), 15)
    assert s.offset == 3 and s.lse_c > 0


def test_syncnet_windows_and_resampling() -> None:
    crops = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((10, 224, 224, 3), np.uint8)
    mf = np.arange(44 * 13, dtype=np.float32).reshape(44, 13)
    vid, aud = S.syncnet_inputs(crops, mf)
    assert vid.shape == (5, 3, 5, 224, 224) and aud.shape == (5, 1, 13, 20)  # last start = min(10, 44 // 4) - 5
    assert vid[2, 0, :, 0, 0].tolist() == [2, 3, 4, 5, 6]
    np.testing.assert_array_equal(aud[2, 0], mf[8:28].T)
    assert S.resample_to_25fps(10, 50.0) == [0, 2, 4, 6, 8]
    assert S.resample_to_25fps(6, 30.0) == [0, 1, 2, 3, 4]


def test_syncnet_architecture_shapes_and_weight_file(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    model = S.build_syncnet()
    with torch.no_grad():
        assert model.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)
        assert model.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
    keys = set(model.state_dict())
    assert {"netcnnaud.0.weight", "netfcaud.3.weight", "netcnnlip.0.weight", "netfclip.3.bias"} <= keys
    path = tmp_path / "syncnet_v2.model"
    torch.save(model.state_dict(), path)
    loaded = S.load_syncnet(path)
    assert torch.equal(loaded.state_dict()["netcnnlip.0.weight"], model.state_dict()["netcnnlip.0.weight"])
    with pytest.raises(InputError, match="syncnet_python"):
        S.load_syncnet(tmp_path / "absent.model")


def test_syncnet_full_protocol_random_weights() -> None:
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(12)]
    boxes = [(20.0, 20.0, 70.0, 76.0)] * 12
    score = S.syncnet_score(S.build_syncnet(), frames, boxes, rng.normal(0, 0.1, 8000).astype(np.float32), vshift=15)
    assert score.distances.shape == (31,)
    assert score.lse_d == pytest.approx(score.distances.min())
    assert score.lse_c == pytest.approx(np.median(score.distances) - score.distances.min())
    assert score.offset == 15 - int(np.argmin(score.distances))


def test_arcface_protocol_samples_16_and_takes_best_pair() -> None:
    def unit(v: list[float]) -> np.ndarray:
        a = np.asarray(v, float)
        return a / np.linalg.norm(a)

    class FakeApp:
        """Stands in for insightface FaceAnalysis: the frame's value decides its faces."""

        def __init__(self) -> None:
            self.seen: list[int] = []

        def get(self, bgr: np.ndarray) -> list[SimpleNamespace]:
            v = int(bgr[0, 0, 0])
            self.seen.append(v)
            if v == 255:  # the reference: two faces
                return [SimpleNamespace(normed_embedding=unit([1, 0])), SimpleNamespace(normed_embedding=unit([0, 1]))]
            if v % 2:  # odd frames: no face
                return []
            return [SimpleNamespace(normed_embedding=unit([1, 1]))]

    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(31)]
    app = FakeApp()
    out = arcface_csim(frames, np.full((4, 4, 3), 255, np.uint8), app)
    assert app.seen[1:] == evenly_spaced(31, 16) == list(range(0, 31, 2))
    assert out["arcface_csim"] == pytest.approx(np.sqrt(0.5))  # best pair cos([1,1],[1,0])
    assert out["arcface_frames_with_face"] == 16


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_frechet_and_feature_extractors_shapes() -> None:
    import torch

    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 3.0) == pytest.approx(4 * 9.0, rel=1e-6)  # ||mu||^2, equal covariances

    class Inc(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_features: bool = True) -> torch.Tensor:
            return x.float().mean(dim=(2, 3)).repeat(1, 4)

    class I3D(torch.nn.Module):
        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = True, return_features: bool = True) -> torch.Tensor:
            return x.mean(dim=(2, 3, 4)).repeat(1, 2)

    imgs = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    assert inception_features(torch.jit.script(Inc()), imgs, batch=2).shape == (5, 12)
    segs = video_segments(imgs * 7, 16)
    assert len(segs) == 2 and segs[0].shape == (16, 32, 32, 3)
    feats = i3d_features(torch.jit.script(I3D()), segs)
    assert feats.shape == (2, 6) and np.all(np.abs(feats) <= 1.0)  # [-1, 1] input range


def test_clip_score_arithmetic() -> None:
    assert clip_score_from_embeddings(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([2.0, 0.0])) == pytest.approx(50.0)


def test_judge_score_parsing() -> None:
    assert parse_judge_score("fine.\nScore: 4") == 4
    assert parse_judge_score("Score: 2 ... on reflection\n**Score:** 5") == 5  # the last one counts
    assert parse_judge_score("Score: 9") is None
    assert parse_judge_score("no score here") is None


def test_vlm_judge_against_local_openai_compatible_server() -> None:
    received: list[dict] = []
    answers = ["The subject matches.\nScore: 4", "I cannot tell."]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "body": body})
            text = answers[len(received) - 1]
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        frames = [np.full((32, 32, 3), i, np.uint8) for i in range(20)]
        good = vlm_judge(url, frames, "a man talks", model="judge")
        bad = vlm_judge(url, frames, "a man talks", model="judge")
    finally:
        server.shutdown()
    assert good["text_alignment"] == 4
    assert bad["text_alignment"] is None and "Score" in bad["text_alignment_note"]
    req = received[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["temperature"] == 0 and req["body"]["model"] == "judge"
    content = req["body"]["messages"][0]["content"]
    assert content[0]["text"].rstrip().endswith('"Score: <1-5>".') and "a man talks" in content[0]["text"]
    assert sum(1 for c in content if c["type"] == "image_url") == 8


def test_judge_unreachable_is_a_note_not_a_number() -> None:
    out = vlm_judge("http://127.0.0.1:9/v1", [np.zeros((8, 8, 3), np.uint8)], "x", model="m", timeout=2)
    assert out["text_alignment"] is None and "failed" in out["text_alignment_note"]


def test_command_quality_scorer(tmp_path: Path) -> None:
    import sys

    ok = CommandQualityScorer(f"{sys.executable} -c \"print('loading'); print(3.25)\" {{video}}")(tmp_path / "v.mp4")
    assert ok == {"video_quality": 3.25}
    bad = CommandQualityScorer(f"{sys.executable} -c \"import sys; sys.exit(3)\"")(tmp_path / "v.mp4")
    assert bad["video_quality"] is None and "exit 3" in bad["video_quality_note"]


def test_missing_weights_are_listed_with_file_and_source() -> None:
    rows = skipped(WeightsConfig())
    assert {r["metric"] for r in rows} == {s.name for s in SPECS}
    sync = next(r for r in rows if r["metric"] == "syncnet")
    assert "syncnet_v2.model" in sync["needs"] and "syncnet_python" in sync["source"]
    assert all(r["reason"] and r["needs"] and r["source"] for r in rows)
    assert "syncnet" not in {r["metric"] for r in skipped(WeightsConfig(syncnet=Path(__file__)))}
