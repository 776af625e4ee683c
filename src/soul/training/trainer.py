"""The flow-matching trainer for Soul: one GPU to many nodes, staged, exactly resumable.

Design choices, each for a reason:
- Every random draw of a step (timesteps, noise, guidance dropout, prefix length) comes from a
  generator seeded by (run seed, global sample index). A sample's loss therefore does not depend on
  how the global batch is split across processes (DDP gradients equal a single process's), and a
  resumed run replays exactly what an uninterrupted one would have done.
- The loss is a per-sample mean, averaged over samples, so it has the same meaning at any batch
  size and world size.
- Encoders (VAE, umT5, wav2vec2) are frozen and run without gradients; only the chosen parameters
  train: Soul's audio layers (stage 1), everything (stage 2), or LoRA adapters plus audio layers.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from soul.errors import InputError, RuntimeFailure
from soul.sampling.schedules import add_noise, shift_sigma, to_timestep, velocity_target
from soul.sampling.seeds import mix_seed
from soul.training.cache import FeatureCache
from soul.training.checkpointing import CheckpointManager, rng_state, set_rng_state
from soul.training.config import TrainConfig
from soul.training.data import ClipWindowDataset, TrainSample, box_slices
from soul.training.loop import LoopPlan, run_steps

if TYPE_CHECKING:
    from soul.training.pixel_loss import MouthCrop


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistContext:
    """Join the process group torchrun/accelerate set up (gloo on CPU, nccl on GPU); else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return DistContext(dist.get_rank(), dist.get_world_size(), local)


def sample_generator(seed: int, sample_index: int) -> torch.Generator:
    """The generator of one global sample: independent of rank and batch layout.

    Seeded through ``mix_seed`` (the scheme long videos seed chunks with), so neighbouring samples
    and neighbouring run seeds get unrelated streams while staying a pure function of both.
    """
    return torch.Generator().manual_seed(mix_seed(seed, sample_index))


def sample_sigma(gen: torch.Generator, mode: str, shift: float) -> float:
    """Training noise level: logit-normal (mass in the middle, as SD3/Wan train) or uniform, then shifted."""
    if mode == "logit_normal":
        s = torch.sigmoid(torch.randn((), generator=gen)).item()
    else:
        s = torch.rand((), generator=gen).item()
    s = min(max(s, 1e-4), 1.0)
    return shift_sigma(s, shift)


def lr_lambda(cfg: TrainConfig) -> Any:
    warm, total, kind = cfg.optim.warmup_steps, cfg.max_steps, cfg.optim.schedule

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if kind == "cosine":
            progress = (step - warm) / max(1, total - warm)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


class Trainer:
    """Builds the model from a preset or checkpoint, then runs `train()` to `max_steps`."""

    def __init__(self, cfg: TrainConfig, output: str | Path | None = None, resume: bool = False) -> None:
        from soul.models.transformer import SOUL_PREFIXES
        from soul.pipelines.soul_pipeline import SoulPipeline

        self.cfg = cfg
        self.ctx = init_distributed()
        self.output = Path(output or cfg.output)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.device = torch.device(f"cuda:{self.ctx.local_rank}" if torch.cuda.is_available() else "cpu")
        if cfg.init_checkpoint:
            self.pipe = SoulPipeline.from_pretrained(cfg.init_checkpoint, preset=cfg.preset, torch_dtype=torch.float32, device=self.device)
        else:
            self.pipe = SoulPipeline.from_preset(cfg.preset, seed=cfg.seed, device=self.device)
        self.model_config = self.pipe.config
        for module in (self.pipe.vae, self.pipe.text_encoder, self.pipe.audio_encoder):
            for p in _parameters(module):
                p.requires_grad_(False)
        self.transformer = self.pipe.transformer
        self.transformer.train()
        if cfg.gradient_checkpointing:
            self.transformer.enable_gradient_checkpointing()
        self._select_trainable(SOUL_PREFIXES)
        self.transformer_class = type(self.transformer)  # FSDP2 swaps the class of what it shards
        self.model: torch.nn.Module = self._wrap(self.transformer)
        self.param_names = [n for n, p in self.transformer.named_parameters() if p.requires_grad]
        self.params = [p for p in self.transformer.parameters() if p.requires_grad]
        if not self.params:
            raise InputError("trainable", "no parameters to train", "use trainable: audio, all or lora")
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        self.data = ClipWindowDataset(cfg.data, seed=cfg.seed, reference_from_clip=cfg.conditioning.reference_from_clip)
        self.checkpoints = CheckpointManager(self.output / "checkpoints", keep_last=cfg.keep_last)
        self.cache = FeatureCache(cfg.cache_dir, namespace=self._encoder_fingerprint()) if cfg.cache_dir else None
        self.step = 0
        self.nonfinite = 0
        if resume:
            self._resume()
        self.null_text = self._text([""])

    # ------------------------------------------------------------------ setup

    def _select_trainable(self, soul_prefixes: tuple[str, ...]) -> None:
        mode = self.cfg.trainable
        if mode == "lora":
            try:
                from peft import LoraConfig
            except ImportError:
                raise InputError("trainable: lora", "needs the peft package", "pip install 'soul-avatar[train]'") from None
            self.transformer.add_adapter(LoraConfig(r=self.cfg.lora_rank, lora_alpha=self.cfg.lora_rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=True))
        for name, p in self.transformer.named_parameters():
            if mode == "all":
                p.requires_grad_(True)
            elif mode == "audio":
                p.requires_grad_(name.startswith(soul_prefixes))
            else:
                p.requires_grad_(name.startswith(soul_prefixes) or "lora_" in name)

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.ctx.world_size == 1:
            return module
        mode = self.cfg.distributed
        if mode == "fsdp":
            from soul.training.fsdp import shard_transformer

            if self.cfg.trainable == "lora":  # the export rebuilds a plain model from the gathered state: adapters not handled
                raise InputError("trainable: lora", "is not supported with distributed: fsdp", "use distributed: ddp (LoRA fits one GPU's memory, see README)")

            return shard_transformer(module)  # in place: self.transformer's parameters become shards
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[self.ctx.local_rank] if self.device.type == "cuda" else None, find_unused_parameters=True)

    @property
    def sharded(self) -> bool:
        from soul.training.fsdp import is_sharded

        return is_sharded(self.model)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The transformer's whole state dict, full tensors on the CPU. Under FSDP a collective:
        every rank calls it, rank 0 receives the tensors, the others an empty dict."""
        from soul.training.fsdp import full_model_state

        return full_model_state(self.model if self.sharded else self.transformer)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Full tensors of the trained parameters (a collective under FSDP; see ``full_state_dict``)."""
        if self.sharded:
            full = self.full_state_dict()
            return {n: full[n] for n in self.param_names if n in full}
        return {n: p.detach() for n, p in self.transformer.named_parameters() if p.requires_grad}

    def _resume(self) -> None:
        latest = self.checkpoints.latest()
        if latest is None:
            return
        weights, state, meta = self.checkpoints.load(latest)
        from soul.training import fsdp

        # Checkpoints hold full tensors whatever the layout that wrote them, so any layout resumes
        # any other: FSDP keeps its shard of each; the optimiser state is keyed by position
        # (one process / DDP) or by parameter name (FSDP) and converted as needed.
        fsdp.load_full_model_state(self.model if self.sharded else self.transformer, weights)
        if self.sharded:
            fsdp.load_full_optimizer_state(self.model, self.optimizer, state["optimizer"], self.param_names)
        else:
            self.optimizer.load_state_dict(fsdp.by_position(state["optimizer"], self.param_names))
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][self.ctx.rank] if isinstance(state["rng"], list) else state["rng"])
        self.step = int(meta["step"])
        self.nonfinite = int(state.get("nonfinite", 0))

    def save_checkpoint(self) -> Path | None:
        """Full weights and optimiser state, written by rank 0 (collective in multi-process runs)."""
        rngs: Any = rng_state()
        if self.ctx.world_size > 1:
            gathered: list[Any] = [None] * self.ctx.world_size
            dist.all_gather_object(gathered, rngs)
            rngs = gathered
        if self.sharded:
            from soul.training.fsdp import full_optimizer_state

            weights = self.trainable_state()
            optimizer = full_optimizer_state(self.model, self.optimizer)  # keyed by parameter name
        else:
            weights, optimizer = self.trainable_state(), self.optimizer.state_dict()
        if not self.ctx.is_main:
            return None
        state = {"optimizer": optimizer, "scheduler": self.scheduler.state_dict(), "rng": rngs, "nonfinite": self.nonfinite}
        meta = {"preset": self.cfg.preset, "trainable": self.cfg.trainable, "samples_seen": self.step * self.global_batch, "world_size": self.ctx.world_size, "distributed": "fsdp" if self.sharded else ("ddp" if self.ctx.world_size > 1 else "none")}
        return self.checkpoints.save(self.step, weights, state, meta)

    @property
    def global_batch(self) -> int:
        return self.cfg.optim.batch_size * self.cfg.optim.grad_accum * self.ctx.world_size

    # ------------------------------------------------------------------ frozen encoders (cached)

    def _encoder_fingerprint(self) -> str:
        """Cache namespace: the preset plus a digest of the frozen encoders' weights.

        A retrained VAE or another audio encoder must never be served latents cached for the old
        one. Hashing every weight of a 5B-scale encoder would cost seconds per start, so each
        tensor contributes its name, shape, sum and first values: any retraining changes them.
        """
        import hashlib

        digest = hashlib.sha256(self.model_config.name.encode())
        for module in (self.pipe.vae, self.pipe.text_encoder, self.pipe.audio_encoder):
            owner = module if isinstance(module, torch.nn.Module) else getattr(module, "model", module)
            for name, p in owner.named_parameters() if isinstance(owner, torch.nn.Module) else []:
                flat = p.detach().float().reshape(-1)
                digest.update(f"{name}{tuple(p.shape)}{float(flat.sum()):.6e}".encode())
                digest.update(flat[:16].cpu().numpy().tobytes())
        return f"{self.model_config.name}-{digest.hexdigest()[:16]}"

    def _cached(self, kind: str, parts: tuple, compute: Any) -> torch.Tensor:
        if self.cache is None:
            return compute()
        return self.cache.get_or_compute(kind, parts, compute).to(self.device)

    def _text(self, prompts: list[str]) -> torch.Tensor:
        return self._cached("text", tuple(prompts), lambda: self.pipe.encode_prompt(prompts))

    def _audio(self, audio: np.ndarray | list[np.ndarray], num_frames: int) -> torch.Tensor:
        """Audio features ``[1, N, ...]`` of one voice, or of each person's voice (a list)."""
        fps = self.cfg.data.fps
        streams = audio if isinstance(audio, list) else [audio]
        return self._cached("audio", (*streams, num_frames, fps), lambda: self.pipe.encode_audio(streams, num_frames=num_frames, fps=fps))

    def _speaker_masks(self, sample: TrainSample, h: int, w: int) -> torch.Tensor | None:
        """Each person's region on the latent grid ``[1, N, h, w]`` (``h``, ``w``: the latents' height
        and width; None for one person): a latent cell belongs to the person whose box holds its centre."""
        if len(sample.speakers) < 2:
            return None
        ys, xs = (torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w
        masks = torch.zeros(1, len(sample.speakers), h, w)
        for k, speaker in enumerate(sample.speakers):
            x0, y0, x1, y1 = speaker.box
            masks[0, k] = ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
        return masks.to(self.device)

    def _latents(self, pixels: np.ndarray) -> torch.Tensor:
        from soul.models.vae import encode_frames

        def compute() -> torch.Tensor:
            video = torch.from_numpy(pixels).permute(3, 0, 1, 2)[None].to(self.device)
            return encode_frames(self.pipe.vae, video).float()

        return self._cached("latents", (pixels,), compute)

    # ------------------------------------------------------------------ one step

    def sample_indices(self, step: int, micro: int) -> list[int]:
        """Global sample indices of this process's micro-batch: contiguous per rank."""
        b, acc = self.cfg.optim.batch_size, self.cfg.optim.grad_accum
        base = step * self.global_batch + (micro * self.ctx.world_size + self.ctx.rank) * b
        return list(range(base, base + b))

    def load_samples(self, indices: list[int]) -> list[TrainSample]:
        n = len(self.data)
        return [self.data.sample(i // n, i % n) for i in indices]

    def sample_losses(self, samples: list[TrainSample], indices: list[int]) -> torch.Tensor:
        """Per-sample flow-matching losses [B] (velocity MSE on noisy frames, clean frames masked)."""
        from soul.sampling.layout import audio_frame_mask, token_timesteps

        cfg, cond = self.cfg, self.cfg.conditioning
        losses = []
        crops: list[MouthCrop] = []
        for sample, index in zip(samples, indices):
            gen = sample_generator(cfg.seed, index)
            with torch.no_grad():
                x0 = self._latents(sample.frames).clone()
                x0[:, :, :1] = self._latents(sample.reference[None])  # the anchor: a frame from anywhere in the clip
            _, c, f, h, w = x0.shape
            prefix = 1 + int(torch.randint(0, min(cond.max_prefix_latents, f - 2) + 1, (), generator=gen)) if f > 2 else 1
            drop = torch.rand(3, generator=gen)
            drop_both = bool(drop[0] < cond.drop_both)
            drop_text = drop_both or bool(drop[1] < cond.drop_text)
            drop_audio = drop_both or bool(drop[2] < cond.drop_audio)
            sigma = sample_sigma(gen, cfg.timestep_sampling, cfg.flow_shift)
            noise = torch.randn(x0.shape, generator=gen).to(self.device)
            xt = add_noise(x0, noise, sigma)
            xt[:, :, :prefix] = x0[:, :, :prefix]
            with torch.no_grad():
                text = self.null_text if drop_text else self._text([sample.caption])
                voices = [speaker.audio for speaker in sample.speakers] if len(sample.speakers) > 1 else sample.audio
                audio = self._audio(voices, sample.frames.shape[0])
                if drop_audio:
                    audio = torch.zeros_like(audio)
            patch = tuple(int(x) for x in self.transformer.config.patch_size)
            timestep = token_timesteps(to_timestep(sigma), (f, h, w), patch, prefix, 1, self.device)
            autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.mixed_precision == "bf16" and self.device.type == "cuda") else nullcontext()
            with autocast:
                pred = self.model(
                    hidden_states=xt,
                    timestep=timestep,
                    encoder_hidden_states=text,
                    audio_features=audio,
                    audio_masks=self._speaker_masks(sample, h, w),
                    audio_frame_mask=audio_frame_mask(f, prefix, 1, self.device),
                    return_dict=False,
                )[0].float()
            target = velocity_target(x0, noise)
            weight = self.loss_weight(sample, (f, h, w), prefix)
            losses.append(((pred - target) ** 2 * weight).sum() / (weight.sum() * c))
            if cond.pixel_mouth_weight > 0:
                crops += self.mouth_crops(sample, xt, pred, sigma, x0[:, :, :prefix], len(losses) - 1)
        total = torch.stack(losses)
        if cond.pixel_mouth_weight > 0:
            from soul.training.pixel_loss import mouth_pixel_losses  # imports the VAE code only when used

            total = total + cond.pixel_mouth_weight * mouth_pixel_losses(self.pipe.vae, crops, len(losses)).to(total)
        return total

    def mouth_crops(self, sample: TrainSample, xt: torch.Tensor, pred: torch.Tensor, sigma: float, x0_prefix: torch.Tensor, index: int) -> list[MouthCrop]:
        """The windows around this sample's mouths for ``conditioning.pixel_mouth_weight``."""
        from soul.training.pixel_loss import mouth_crops, predicted_clean_latents

        vae = self.pipe.vae.config
        clean = predicted_clean_latents(xt, pred, sigma, x0_prefix)
        return mouth_crops(clean, sample.frames, sample.mouth_boxes, x0_prefix.shape[2], self.cfg.conditioning.pixel_mouth_crop,
                           int(vae.scale_factor_spatial or 16), int(vae.scale_factor_temporal or 4), index)

    def loss_weight(self, sample: TrainSample, shape: tuple[int, int, int], prefix: int) -> torch.Tensor:
        """Per-latent loss weight: 0 on the given prefix, `mouth_weight` inside the annotated mouth box."""
        f, h, w = shape
        weight = torch.ones(1, 1, f, h, w, device=self.device)
        weight[:, :, :prefix] = 0.0
        mouth = self.cfg.conditioning.mouth_weight
        for box in sample.mouth_boxes if mouth > 1.0 else []:
            ys, xs = box_slices(box, h, w)
            weight[:, :, prefix:, ys, xs] *= mouth
        return weight

    def train_step(self) -> dict[str, float]:
        """One optimiser step over `grad_accum` micro-batches; a non-finite loss skips it."""
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        acc = self.cfg.optim.grad_accum
        total = 0.0
        finite = True
        for micro in range(acc):
            indices = self.sample_indices(self.step, micro)
            losses = self.sample_losses(self.load_samples(indices), indices)
            loss = losses.mean() / acc
            if not torch.isfinite(loss):
                finite = False
            sync = nullcontext() if (micro == acc - 1 or not hasattr(self.model, "no_sync")) else self.model.no_sync()
            with sync:
                loss.backward()
            total += float(loss.detach())
        flag = torch.tensor([0.0 if finite else 1.0])
        loss_t = torch.tensor([total])
        if self.ctx.world_size > 1:
            dist.all_reduce(flag)
            dist.all_reduce(loss_t)
            loss_t /= self.ctx.world_size
        grad_norm = float("nan")
        if flag.item() > 0:
            self.nonfinite += 1
            self.optimizer.zero_grad(set_to_none=True)
            if self.nonfinite > self.cfg.max_nonfinite:
                raise RuntimeFailure(f"{self.nonfinite} steps had a non-finite loss (limit {self.cfg.max_nonfinite}); lower optim.lr or check the data")
        else:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip))
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        elapsed = time.perf_counter() - start
        return {
            "loss": float(loss_t.item()) if flag.item() == 0 else float("nan"),
            "lr": float(self.scheduler.get_last_lr()[0]),
            "grad_norm": grad_norm,
            "samples_per_s": self.global_batch / elapsed,
            "nonfinite_steps": float(self.nonfinite),
        }

    # ------------------------------------------------------------------ export

    def export(self, directory: str | Path | None = None) -> Path | None:
        """Write a complete Soul checkpoint (official layout + Soul's layers) that generation loads.

        LoRA adapters are fused into the backbone first, so the export is a plain Soul model; the
        training state is untouched (the fusion is undone afterwards).
        """
        target = Path(directory or self.output / "export")
        full = self.full_state_dict() if self.sharded else None  # collective: every rank gathers
        if not self.ctx.is_main:
            return None
        from soul.pipelines.soul_pipeline import SoulPipeline

        source = self.transformer
        if full is not None:
            # A plain (unsharded) model of the original class; fully_shard changed self.transformer's.
            source = self.transformer_class.from_config(self.transformer.config)
            source.load_state_dict(full)
        fused = self.cfg.trainable == "lora"
        if fused:
            source.fuse_lora()
        try:
            export_model = type(source).from_config(source.config)
            state = {k: v for k, v in source.state_dict().items() if "lora_" not in k and ".base_layer." not in k}
            state.update({k.replace(".base_layer.", "."): v for k, v in source.state_dict().items() if ".base_layer." in k})
            export_model.load_state_dict(state)
        finally:
            if fused:
                source.unfuse_lora()
        pipe = SoulPipeline(export_model.eval(), self.pipe.vae, self.pipe.text_encoder, self.pipe.audio_encoder, self.model_config)
        return pipe.save_pretrained(target)

    # ------------------------------------------------------------------ the loop

    def train(self, max_steps: int | None = None, progress: Any = None) -> list[dict[str, float]]:
        """Run to ``max_steps`` (default: the config's); export once the config's last step is reached.

        A shorter ``max_steps`` stops early with a checkpoint, so a later ``resume=True`` run
        continues exactly where this one stopped.
        """
        target = max_steps or self.cfg.max_steps
        plan = LoopPlan(
            target=target,
            log_every=self.cfg.log_every,
            checkpoint_every=self.cfg.checkpoint_every,
            metrics_dir=self.output if self.ctx.is_main else None,
            tensorboard=self.ctx.is_main,
        )
        history = run_steps(self, plan, progress)
        if self.step >= self.cfg.max_steps:
            self.export()
        return history


def _parameters(module: Any) -> list[torch.nn.Parameter]:
    """Parameters of a module or of a wrapper holding one (the text/audio encoder classes)."""
    if isinstance(module, torch.nn.Module):
        return list(module.parameters())
    found: list[torch.nn.Parameter] = []
    for value in vars(module).values():
        if isinstance(value, torch.nn.Module):
            found.extend(value.parameters())
    return found
