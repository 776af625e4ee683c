"""Metrics that need weights no package ships: each declares the file it needs and where users
get it; `available()` says whether it can run, and the scorer reports the reason when it cannot.

- SyncNet Sync-C / Sync-D / offset (`soul.bench.syncnet`): `syncnet_v2.model`.
- ArcFace CSIM (Soul-Bench's identity): insightface + the `buffalo_l` model folder.
- FID (Inception-v3 pool features) and FVD (I3D logits) from the TorchScript detectors the field
  uses (StyleGAN2-ADA's `inception-2015-12-05.pt`, StyleGAN-V's `i3d_torchscript.pt`).
- CLIP score: a CLIP model folder in Hugging Face format (transformers ships the class).
- VLM text alignment: an OpenAI-compatible server (`--judge-url`), rubric ending "Score: <1-5>".
- Video quality: any command that prints a score (`--vq-cmd`), e.g. a FineVQ wrapper.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import shlex
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from soul.bench.metrics import evenly_spaced
from soul.bench.syncnet import WEIGHTS_FILE as SYNCNET_FILE, WEIGHTS_SOURCE as SYNCNET_SOURCE
from soul.errors import InputError


@dataclass
class WeightsConfig:
    """Where the user put each weight (all optional); `None` means the metric is skipped."""

    syncnet: Path | None = None
    arcface_root: Path | None = None
    inception: Path | None = None
    i3d: Path | None = None
    clip: Path | None = None
    judge_url: str | None = None
    judge_model: str = "Qwen/Qwen3-VL-8B-Instruct"
    vq_cmd: str | None = None


@dataclass(frozen=True)
class MetricSpec:
    """What a weighted metric reports, which file it needs, and where users get it."""

    name: str
    fields: tuple[str, ...]
    needs: str
    source: str
    check: Callable[[WeightsConfig], str | None]  # None = can run, else the reason it cannot

    def skip_reason(self, cfg: WeightsConfig) -> str | None:
        return self.check(cfg)


def _file(path: Path | None, what: str) -> str | None:
    if path is None:
        return f"not given ({what})"
    if not Path(path).exists():
        return f"{path} does not exist"
    return None


def _arcface_check(cfg: WeightsConfig) -> str | None:
    if importlib.util.find_spec("insightface") is None or importlib.util.find_spec("onnxruntime") is None:
        return "needs the insightface and onnxruntime packages (pip install insightface onnxruntime)"
    if cfg.arcface_root is None:
        return "not given (--arcface-root, the folder holding models/buffalo_l)"
    if not (Path(cfg.arcface_root) / "models" / "buffalo_l").is_dir():
        return f"{cfg.arcface_root}/models/buffalo_l not found"
    return None


SPECS: tuple[MetricSpec, ...] = (
    MetricSpec("syncnet", ("sync_c", "sync_d", "syncnet_offset"), SYNCNET_FILE + " (--syncnet)", SYNCNET_SOURCE,
               lambda c: _file(c.syncnet, "--syncnet")),
    MetricSpec("arcface", ("arcface_csim",), "insightface + buffalo_l (--arcface-root)",
               "insightface model zoo: buffalo_l.zip (github.com/deepinsight/insightface/releases/tag/v0.7), unzip to ROOT/models/buffalo_l",
               _arcface_check),
    MetricSpec("fid", ("fid",), "inception-2015-12-05.pt (--inception)",
               "NVlabs stylegan2-ada-pytorch: nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
               lambda c: _file(c.inception, "--inception")),
    MetricSpec("fvd", ("fvd",), "i3d_torchscript.pt (--i3d)",
               "universome/stylegan-v: i3d_torchscript.pt (the FVD detector linked from its README)",
               lambda c: _file(c.i3d, "--i3d")),
    MetricSpec("clip", ("clip_score",), "a CLIP model folder in Hugging Face format (--clip)",
               "huggingface.co/openai/clip-vit-large-patch14 (soul download on a connected machine, or huggingface-cli download)",
               lambda c: _file(c.clip, "--clip")),
    MetricSpec("vlm_judge", ("text_alignment",), "an OpenAI-compatible VLM server (--judge-url)",
               "serve Qwen3-VL with vLLM: vllm serve Qwen/Qwen3-VL-8B-Instruct",
               lambda c: None if c.judge_url else "not given (--judge-url)"),
    MetricSpec("video_quality", ("video_quality",), "a scorer command printing a number (--vq-cmd)",
               "e.g. a FineVQ wrapper script (github.com/IntMeGroup/FineVQ) taking {video}",
               lambda c: None if c.vq_cmd else "not given (--vq-cmd)"),
)


def skipped(cfg: WeightsConfig) -> list[dict[str, str]]:
    """Each weighted metric that cannot run, with the reason, the file it needs and its source."""
    out = []
    for spec in SPECS:
        reason = spec.skip_reason(cfg)
        if reason:
            out.append({"metric": spec.name, "fields": ", ".join(spec.fields), "reason": reason, "needs": spec.needs, "source": spec.source})
    return out


# ---------------------------------------------------------------- ArcFace (Soul-Bench identity)


def arcface_csim(frames: list[np.ndarray], reference: np.ndarray, app: Any, *, samples: int = 16) -> dict[str, Any]:
    """Soul-Bench's identity: 16 evenly sampled frames; per frame the max cosine over (frame face,
    reference face) pairs of `normed_embedding`; mean over frames with a face. `app` is an
    insightface `FaceAnalysis` (or anything with `.get(bgr_image) -> faces`)."""
    refs = [f.normed_embedding for f in app.get(np.ascontiguousarray(reference[..., ::-1]))]
    if not refs:
        return {"arcface_csim": None, "arcface_note": "no face in the reference image"}
    sims = []
    for i in evenly_spaced(len(frames), samples):
        faces = app.get(np.ascontiguousarray(frames[i][..., ::-1]))
        if faces:
            sims.append(max(float(np.dot(f.normed_embedding, r)) for f in faces for r in refs))
    if not sims:
        return {"arcface_csim": None, "arcface_note": "no face found in the sampled frames"}
    return {"arcface_csim": float(np.mean(sims)), "arcface_frames_with_face": len(sims)}


def load_arcface(root: Path) -> Any:
    """insightface FaceAnalysis(buffalo_l) on CPU with Soul-Bench's 640x640 detector input."""
    from insightface.app import FaceAnalysis  # type: ignore[import-not-found]

    app = FaceAnalysis(name="buffalo_l", root=str(root), providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640))
    return app


# ---------------------------------------------------------------- FID / FVD


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^½) of two feature sets [N, D]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise InputError("frechet", f"needs two feature sets [N>=2, D], got {a.shape} and {b.shape}", None)
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ sb @ root_a), 0, None)).sum()
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * tr_sqrt)


def inception_features(detector: Any, images: list[np.ndarray], batch: int = 16) -> np.ndarray:
    """2048-d pool features from StyleGAN2-ADA's TorchScript Inception (uint8 NCHW, any size)."""
    import torch

    feats = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.stack(images[i : i + batch])).permute(0, 3, 1, 2).contiguous()
            feats.append(detector(x, return_features=True).numpy())
    return np.concatenate(feats)


def i3d_features(detector: Any, clips: list[np.ndarray]) -> np.ndarray:
    """400-d I3D features of 16-frame clips [T,H,W,3] uint8 (StyleGAN-V's detector: float input in
    [-1, 1], [B,3,T,H,W], resized to 224 inside)."""
    import torch

    feats = []
    with torch.no_grad():
        for c in clips:
            x = torch.from_numpy(np.asarray(c, np.float32) / 127.5 - 1.0).permute(3, 0, 1, 2)[None].contiguous()
            feats.append(detector(x, rescale=False, resize=True, return_features=True).numpy())
    return np.concatenate(feats)


def video_segments(frames: list[np.ndarray], length: int = 16) -> list[np.ndarray]:
    """Non-overlapping `length`-frame segments (FVD's unit), the tail dropped."""
    return [np.stack(frames[s : s + length]) for s in range(0, len(frames) - length + 1, length)]


# ---------------------------------------------------------------- CLIP score


def clip_score_from_embeddings(image_embeds: np.ndarray, text_embed: np.ndarray) -> float:
    """CLIPScore: 100 · max(cos, 0) per frame, averaged (Hessel et al. with w=1, as in T2V papers)."""
    im = np.asarray(image_embeds, np.float64)
    tx = np.asarray(text_embed, np.float64).reshape(-1)
    cos = im @ tx / (np.linalg.norm(im, axis=1) * np.linalg.norm(tx) + 1e-12)
    return float(np.mean(100.0 * np.clip(cos, 0, None)))


def clip_score(folder: Path, frames: list[np.ndarray], prompt: str, *, samples: int = 8) -> float:
    """CLIP score of evenly sampled frames against the prompt with a local CLIP model folder."""
    import torch
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(str(folder)).eval()
    proc = CLIPProcessor.from_pretrained(str(folder))
    imgs = [frames[i] for i in evenly_spaced(len(frames), samples)]
    with torch.no_grad():
        inputs = proc(text=[prompt], images=imgs, return_tensors="pt", padding=True, truncation=True)
        out = model(**inputs)
    return clip_score_from_embeddings(out.image_embeds.numpy(), out.text_embeds.numpy()[0])


# ---------------------------------------------------------------- VLM judge

RUBRIC = (
    "You are judging a generated talking-human video against its text prompt.\n"
    "Prompt: {prompt}\n"
    "The images are frames sampled evenly from the video, in order. Rate how well the video matches "
    "the prompt (subject, appearance, setting, action, expression, camera):\n"
    "5 = every element matches; 4 = minor deviations; 3 = the main subject matches, some elements "
    "are missing or wrong; 2 = only loosely related; 1 = unrelated.\n"
    "Explain briefly, then end with a line of the form \"Score: <1-5>\"."
)
SCORE_RE = re.compile(r"Score:\s*\**\s*([1-5])(?:\.0+)?\b", re.IGNORECASE)


def parse_judge_score(text: str) -> int | None:
    """The last "Score: N" in the judge's answer (N in 1..5), or None if it gave none."""
    hits = SCORE_RE.findall(text or "")
    return int(hits[-1]) if hits else None


def _jpeg_data_url(frame: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(frame, np.uint8)).save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def judge_request(frames: list[np.ndarray], prompt: str, model: str, *, samples: int = 8) -> dict[str, Any]:
    """The chat-completions body: rubric text + sampled frames as images, temperature 0."""
    content: list[dict[str, Any]] = [{"type": "text", "text": RUBRIC.format(prompt=prompt)}]
    content += [{"type": "image_url", "image_url": {"url": _jpeg_data_url(frames[i])}} for i in evenly_spaced(len(frames), samples)]
    return {"model": model, "temperature": 0, "max_tokens": 512, "messages": [{"role": "user", "content": content}]}


def vlm_judge(url: str, frames: list[np.ndarray], prompt: str, *, model: str, timeout: float = 300.0,
              api_key: str | None = None) -> dict[str, Any]:
    """Ask an OpenAI-compatible server (base URL, e.g. http://host:8000/v1) to score the video."""
    endpoint = url.rstrip("/")
    if not endpoint.endswith("/chat/completions"):
        endpoint += "/chat/completions"
    body = json.dumps(judge_request(frames, prompt, model)).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as err:
        return {"text_alignment": None, "text_alignment_note": f"judge request failed: {err}"}
    try:
        text = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return {"text_alignment": None, "text_alignment_note": "judge answer has no choices[0].message.content"}
    score = parse_judge_score(text)
    if score is None:
        return {"text_alignment": None, "text_alignment_note": "judge answer has no 'Score: <1-5>' line", "judge_answer": text[-500:]}
    return {"text_alignment": score, "judge_answer": text[-500:]}


# ---------------------------------------------------------------- pluggable video quality


@dataclass
class CommandQualityScorer:
    """Runs a command template with {video} (and {prompt}) and reads the last number it prints:
    the plug for FineVQ, DOVER or any scorer living in its own environment."""

    template: str
    timeout: float = 3600.0
    name: str = field(default="video_quality")

    def __call__(self, video: Path, prompt: str = "") -> dict[str, Any]:
        cmd = self.template.format(video=shlex.quote(str(video)), prompt=shlex.quote(prompt))
        try:
            proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return {self.name: None, f"{self.name}_note": f"scorer timed out after {self.timeout:.0f} s"}
        nums = re.findall(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", proc.stdout)
        if proc.returncode != 0 or not nums:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
            return {self.name: None, f"{self.name}_note": f"scorer exit {proc.returncode}, no number printed: {tail[0][:200]}"}
        return {self.name: float(nums[-1])}
