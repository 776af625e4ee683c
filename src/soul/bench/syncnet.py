"""SyncNet (Chung & Zisserman, "Out of time", 2016): our implementation of the published network
and of the evaluation protocol behind Sync-C / Sync-D (LSE-C / LSE-D).

Weights are never in a package: `syncnet_v2.model` (from joonson/syncnet_python's
download_model.sh) is loaded when the user gives it; the layer names follow the published
state-dict layout so that file loads as is. Without it the metric is skipped, never guessed.

Protocol: 25 fps video and 16 kHz audio; each step t feeds 5 consecutive face crops (224², raw
0..255 values) and the 20 MFCC frames (13-dim, 100 Hz, i.e. 0.2 s) that start at 4t; both
streams map to 1024-d; for each offset k in [-vshift, vshift] the distance d(k) is the mean over
t of ||v_t - a_{t+k}|| (audio features zero-padded at the ends); LSE-D = min_k d(k),
LSE-C = median_k d(k) - min_k d(k), offset = vshift - argmin_k.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soul.errors import InputError

SYNCNET_FPS = 25.0
SYNCNET_SR = 16000
CROP_SIZE = 224
WINDOW = 5
MFCC_PER_FRAME = 4
VSHIFT = 15
WEIGHTS_FILE = "syncnet_v2.model"
WEIGHTS_SOURCE = "joonson/syncnet_python: download_model.sh (http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model)"


def build_syncnet():  # noqa: ANN201 - returns torch.nn.Module; torch imported lazily
    """The published SyncNet: an audio CNN over MFCC [B,1,13,20] and a lip 3-D CNN over
    [B,3,5,224,224], each followed by an MLP to 1024-d (module names as in syncnet_v2.model)."""
    import torch
    from torch import nn

    def c2(i: int, o: int, k, s=1, p=1) -> list[nn.Module]:  # noqa: ANN001
        return [nn.Conv2d(i, o, kernel_size=k, stride=s, padding=p), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    def c3(i: int, o: int, k, s=1, p=0) -> list[nn.Module]:  # noqa: ANN001
        return [nn.Conv3d(i, o, kernel_size=k, stride=s, padding=p), nn.BatchNorm3d(o), nn.ReLU(inplace=True)]

    class SyncNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.netcnnaud = nn.Sequential(
                *c2(1, 64, 3), nn.MaxPool2d(1, 1),
                *c2(64, 192, 3), nn.MaxPool2d((3, 3), (1, 2)),
                *c2(192, 384, 3), *c2(384, 256, 3), *c2(256, 256, 3), nn.MaxPool2d((3, 3), (2, 2)),
                *c2(256, 512, (5, 4), 1, 0),
            )
            self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))
            self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))
            self.netcnnlip = nn.Sequential(
                *c3(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
                *c3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
                *c3(256, 256, (1, 3, 3), 1, (0, 1, 1)), *c3(256, 256, (1, 3, 3), 1, (0, 1, 1)),
                *c3(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
                *c3(256, 512, (1, 6, 6), 1, 0),
            )

        def forward_aud(self, x: "torch.Tensor") -> "torch.Tensor":
            return self.netfcaud(self.netcnnaud(x).flatten(1))

        def forward_lip(self, x: "torch.Tensor") -> "torch.Tensor":
            return self.netfclip(self.netcnnlip(x).flatten(1))

    return SyncNet().eval()


def load_syncnet(path: str | Path):  # noqa: ANN201 - torch.nn.Module
    """SyncNet with the user's `syncnet_v2.model` (a state dict saved by syncnet_python)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{WEIGHTS_FILE} not found", f"get it from {WEIGHTS_SOURCE}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    model = build_syncnet()
    missing, unexpected = model.load_state_dict({k.replace("__S__.", ""): v for k, v in state.items()}, strict=False)
    if missing:
        raise InputError(path, f"not a SyncNet state dict: {len(missing)} tensors missing (e.g. {missing[0]})", f"use {WEIGHTS_FILE} from {WEIGHTS_SOURCE}")
    return model


@dataclass(frozen=True)
class SyncNetScore:
    """Sync-C (LSE-C), Sync-D (LSE-D), the offset, and the distance curve d(k) over offsets."""

    offset: int
    lse_c: float
    lse_d: float
    distances: np.ndarray

    def as_fields(self) -> dict[str, float | int]:
        return {"syncnet_offset": int(self.offset), "sync_c": float(self.lse_c), "sync_d": float(self.lse_d)}


def offset_distances(video_feats: np.ndarray, audio_feats: np.ndarray, vshift: int = VSHIFT) -> np.ndarray:
    """d(k) for k = -vshift..vshift: mean over t of ||v_t - a_{t+k}||, audio zero-padded at the ends."""
    v = np.asarray(video_feats, dtype=np.float64)
    a = np.asarray(audio_feats, dtype=np.float64)
    if v.ndim != 2 or a.ndim != 2 or v.shape[1] != a.shape[1]:
        raise InputError("syncnet", f"feature shapes {v.shape} and {a.shape} do not pair", None)
    padded = np.concatenate([np.zeros((vshift, a.shape[1])), a, np.zeros((vshift, a.shape[1]))])
    t = min(v.shape[0], a.shape[0])
    d = np.empty((t, 2 * vshift + 1))
    for i in range(t):
        d[i] = np.linalg.norm(padded[i : i + 2 * vshift + 1] - v[i][None, :], axis=1)
    return d.mean(axis=0)


def score_from_distances(distances: np.ndarray, vshift: int = VSHIFT) -> SyncNetScore:
    """The published arithmetic: offset = vshift - argmin, LSE-D = min, LSE-C = median - min."""
    d = np.asarray(distances, dtype=np.float64)
    k = int(np.argmin(d))
    return SyncNetScore(offset=vshift - k, lse_c=float(np.median(d) - d[k]), lse_d=float(d[k]), distances=d)


def syncnet_inputs(crops: np.ndarray, mfcc_feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windows for every step t: video [T,3,5,224,224] from crops [N,224,224,3] (5 frames from t)
    and audio [T,1,13,20] from MFCC [M,13] (20 frames from 4t), for t < min(N, M // 4) - 5 as in
    syncnet_python (so every audio window is complete)."""
    crops = np.asarray(crops)
    mf = np.asarray(mfcc_feats)
    if crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
        raise InputError("syncnet", f"crops must be [N, 224, 224, 3], got {crops.shape}", None)
    last = min(crops.shape[0], mf.shape[0] // MFCC_PER_FRAME) - WINDOW
    if last <= 0:
        raise InputError("syncnet", f"needs more than {WINDOW} frames with audio, got {crops.shape[0]}", "use a longer clip")
    starts = np.arange(0, last)
    vid = np.stack([crops[s : s + WINDOW] for s in starts]).transpose(0, 4, 1, 2, 3).astype(np.float32)
    aud = np.stack([mf[s * MFCC_PER_FRAME : s * MFCC_PER_FRAME + 20].T for s in starts])[:, None].astype(np.float32)
    return vid, aud


def face_crops(frames: list[np.ndarray], boxes: list[tuple[float, float, float, float]], crop_scale: float = 0.4) -> np.ndarray:
    """Square crops around each frame's face box, enlarged by `crop_scale` (syncnet_python's 0.4),
    resized to 224²; frames are padded with grey so crops near the border keep their centre."""
    import cv2

    out = []
    for f, (x0, y0, x1, y1) in zip(frames, boxes):
        half = max(x1 - x0, y1 - y0) / 2 * (1 + crop_scale)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        pad = int(np.ceil(half)) + 1
        p = cv2.copyMakeBorder(np.ascontiguousarray(f), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(110, 110, 110))
        a0, b0 = int(round(cy - half)) + pad, int(round(cx - half)) + pad
        size = max(2, int(round(2 * half)))
        out.append(cv2.resize(p[a0 : a0 + size, b0 : b0 + size], (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def embed(model, vid: np.ndarray, aud: np.ndarray, batch: int = 20) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """1024-d lip and audio features for every window, in batches."""
    import torch

    vs, as_ = [], []
    with torch.no_grad():
        for i in range(0, vid.shape[0], batch):
            vs.append(model.forward_lip(torch.from_numpy(vid[i : i + batch])).numpy())
            as_.append(model.forward_aud(torch.from_numpy(aud[i : i + batch])).numpy())
    return np.concatenate(vs), np.concatenate(as_)


def syncnet_score(model, frames: list[np.ndarray], boxes: list[tuple[float, float, float, float]], samples: np.ndarray,  # noqa: ANN001
                  *, vshift: int = VSHIFT) -> SyncNetScore:
    """The whole protocol on frames already at 25 fps with one face box per frame and 16 kHz audio."""
    from soul.bench.signal import mfcc

    vid, aud = syncnet_inputs(face_crops(frames, boxes), mfcc(samples, SYNCNET_SR))
    v, a = embed(model, vid, aud)
    return score_from_distances(offset_distances(v, a, vshift), vshift)


def resample_to_25fps(num_frames: int, fps: float) -> list[int]:
    """Source frame index for each 25 fps output frame (nearest earlier), as ffmpeg -r 25 does."""
    n_out = int(np.floor(num_frames / fps * SYNCNET_FPS + 1e-6))
    return [min(num_frames - 1, int(np.floor(i * fps / SYNCNET_FPS + 1e-6))) for i in range(n_out)]
