"""SoulTransformer3DModel: diffusers' Wan2.2 TI2V transformer plus Soul's audio layers.

Why a subclass that re-runs the blocks: the official `WanTransformerBlock` goes self-attention ->
text cross-attention -> FFN in one `forward`, and the model's `forward` passes no extra arguments
to its blocks, so there is no seam where audio can enter after the text cross-attention. Soul's
`forward` therefore mirrors diffusers' model and block forwards step by step (same submodules,
same casts, same order) and inserts `x += AudioCrossAttention(norm(x), audio_tokens)` between the
cross-attention and the FFN of each chosen block. Blocks without audio still call diffusers' own
block. The test suite checks that a fresh Soul model returns bit-identical outputs to a plain
`WanTransformer3DModel` with the same weights, so a diffusers upgrade that changes the block shows
up as a failing test rather than a silent drift.

Parameter names: the backbone's are exactly diffusers' (the official checkpoint loads with no
renaming); Soul's live under `audio_projector.*` and `audio_layers.<block index>.*` only.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor, WanTransformerBlock
from diffusers.utils import apply_lora_scale
from torch import nn

from soul.config import SoulConfig
from soul.errors import InputError
from soul.models.audio_projector import AudioProjector

SOUL_PREFIXES: tuple[str, ...] = ("audio_projector.", "audio_layers.")
"""State-dict key prefixes of Soul's own layers; every other key belongs to the backbone."""

BACKBONE_KWARGS: tuple[str, ...] = tuple(
    name for name in inspect.signature(WanTransformer3DModel.__init__).parameters if name != "self"
)
"""Constructor arguments of diffusers' `WanTransformer3DModel` (what `transformer/config.json` holds)."""

ModelT = TypeVar("ModelT", bound=nn.Module)

MASK_THRESHOLD = 0.5
"""A patch belongs to a speaker when at least this fraction of its latent pixels lie in the mask."""


class AudioCrossAttention(nn.Module):
    """Pre-norm cross-attention from video tokens to the audio tokens of their own latent frame.

    It reuses diffusers' `WanAttention` (q/k RMS norm across heads, the attention backend
    dispatcher) so it runs on the same kernels as the text cross-attention. `to_out` starts at zero
    so the layer adds nothing until trained.
    """

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = FP32LayerNorm(dim, eps, elementwise_affine=True)
        self.attn = WanAttention(
            dim=dim,
            heads=num_heads,
            dim_head=dim // num_heads,
            eps=eps,
            cross_attention_dim_head=dim // num_heads,
            processor=WanAttnProcessor(),
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise every parameter, output projection at zero; callable after `to_empty`."""
        self.norm.reset_parameters()
        for linear in (self.attn.to_q, self.attn.to_k, self.attn.to_v):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        self.attn.norm_q.reset_parameters()
        self.attn.norm_k.reset_parameters()
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        audio_tokens: torch.Tensor,
        num_frames: int,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Residual update `[B, S, dim]` for video tokens `[B, S, dim]` (S = frames x patches).

        `audio_tokens` is `[B * num_frames, T_a, dim]`; folding time into the batch makes the
        attention block-diagonal in time at the cost of a reshape. `attention_mask` (bool,
        `[B * num_frames, 1, S / num_frames, T_a]`) routes each video token to its speaker.
        """
        batch, seq, dim = hidden_states.shape
        normed = self.norm(hidden_states.float()).type_as(hidden_states)
        per_frame = normed.reshape(batch * num_frames, seq // num_frames, dim)
        out = self.attn(per_frame, audio_tokens, attention_mask, None)
        return out.reshape(batch, seq, dim)


class SequenceEntry(nn.Module):
    """Where the token sequence enters the blocks: an identity with a name and no parameters.

    ``forward(hidden_states [B, S, dim], frame_gate [B, S, 1] | None)`` returns both unchanged.
    It exists so sequence parallelism has a module whose inputs are exactly the per-token tensors
    the blocks read: ``soul.parallel``'s context-parallel plan splits both along the sequence here
    (diffusers' own plan splits at ``blocks.0``, whose ``forward`` Soul does not call when block 0
    carries audio).
    """

    def forward(self, hidden_states: torch.Tensor, frame_gate: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return hidden_states, frame_gate


class _AudioContext:
    """Per-forward audio inputs, prepared once and shared by every audio block."""

    __slots__ = ("tokens", "attention_mask", "frame_gate", "num_frames")

    def __init__(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        frame_gate: torch.Tensor | None,
        num_frames: int,
    ) -> None:
        self.tokens = tokens
        self.attention_mask = attention_mask
        self.frame_gate = frame_gate
        self.num_frames = num_frames


class SoulTransformer3DModel(WanTransformer3DModel):
    """Wan2.2 TI2V transformer with zero-initialised, frame-local audio cross-attention.

    The config is diffusers' plus `audio_*` keys, so `from_config` rebuilds the whole model;
    `backbone_config()` returns only diffusers' keys for writing the official layout.

    Sequence parallelism: `soul.parallel.enable_sequence_parallel`, not diffusers'
    `enable_parallelism` alone. The inherited plan is switched off (`_cp_plan = None`, so a bare
    `enable_parallelism(config=...)` fails instead of running): the frame-local audio layers need
    more than a plan can say (each rank's audio tokens and masks are those of the frames its token
    shard covers), which `soul.parallel` adds as a hook on every audio layer.
    """

    _cp_plan = None

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 24,
        attention_head_dim: int = 128,
        in_channels: int = 48,
        out_channels: int = 48,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 14336,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        audio_feature_dim: int = 768,
        audio_num_hidden_states: int = 13,
        audio_window: int = 8,
        audio_tokens_per_frame: int = 32,
        audio_token_dim: int = 768,
        audio_projector_hidden_dim: int = 1024,
        audio_block_indices: list[int] | None = None,
        audio_max_streams: int = 4,
    ) -> None:
        super().__init__(
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim,
            rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        inner_dim = num_attention_heads * attention_head_dim
        indices = list(range(num_layers)) if audio_block_indices is None else sorted(set(audio_block_indices))
        if any(not 0 <= i < num_layers for i in indices):
            raise InputError("audio_block_indices", f"{indices} outside 0..{num_layers - 1}", "use valid block indices")
        self.audio_block_indices = indices
        self.audio_projector = AudioProjector(
            feature_dim=audio_feature_dim,
            num_hidden_states=audio_num_hidden_states,
            window=audio_window,
            tokens_per_frame=audio_tokens_per_frame,
            token_dim=audio_token_dim,
            hidden_dim=audio_projector_hidden_dim,
            out_dim=inner_dim,
        )
        self.audio_layers = nn.ModuleDict(
            {str(i): AudioCrossAttention(inner_dim, num_attention_heads, eps) for i in indices}
        )
        self.sequence_entry = SequenceEntry()

    # ------------------------------------------------------------------ construction / weights

    @classmethod
    def from_backbone(cls, backbone: WanTransformer3DModel, **audio_kwargs: Any) -> SoulTransformer3DModel:
        """Wrap loaded diffusers weights without copying them; Soul's layers start fresh (zero out).

        The backbone's tensors are assigned, not copied, so a 5B backbone costs no second copy of
        memory. `audio_kwargs` are the `audio_*` constructor arguments (see `soul_kwargs`).
        """
        from accelerate import init_empty_weights

        kwargs = {k: backbone.config[k] for k in BACKBONE_KWARGS if k in backbone.config}
        with init_empty_weights():
            model = cls(**kwargs, **audio_kwargs)
        result = model.load_state_dict(backbone.state_dict(), strict=False, assign=True)
        if result.unexpected_keys or any(not k.startswith(SOUL_PREFIXES) for k in result.missing_keys):
            raise InputError(
                "backbone",
                f"weights do not fit the config (missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})",
                "load the backbone with its own config.json",
            )
        reference = backbone.patch_embedding.weight
        model.rope.to(reference.device)  # non-persistent RoPE tables were built on the CPU
        model.init_soul_layers(device=reference.device, dtype=reference.dtype)
        model.train(backbone.training)
        return model

    @torch.no_grad()
    def init_soul_layers(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        """(Re)create Soul's layers at their initial values (zero output), e.g. after a meta build."""
        for module in (self.audio_projector, self.audio_layers):
            first = next(module.parameters())
            target = torch.device(device) if device is not None else first.device
            if first.device.type == "meta":
                module.to_empty(device=target)
            else:
                module.to(target)
            if dtype is not None:
                module.to(dtype)
        self.audio_projector.reset_parameters()
        for layer in self.audio_layers.values():
            layer.reset_parameters()

    def backbone_config(self) -> dict[str, Any]:
        """diffusers' `WanTransformer3DModel` kwargs of this model (no Soul keys)."""
        return {k: self.config[k] for k in BACKBONE_KWARGS if k in self.config}

    def soul_config(self) -> dict[str, Any]:
        """The `audio_*` kwargs that rebuild Soul's layers on a backbone (JSON-serialisable)."""
        out = {k: self.config[k] for k in self.config if k.startswith("audio_")}
        out["audio_block_indices"] = list(self.audio_block_indices)
        return out

    def soul_state_dict(self) -> dict[str, torch.Tensor]:
        """Only Soul's parameters (`audio_projector.*`, `audio_layers.*`)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(SOUL_PREFIXES)}

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the backbone's parameters, with diffusers' names."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(SOUL_PREFIXES)}

    @torch.no_grad()
    def load_soul_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "soul state dict") -> None:
        """Load Soul's layers (casting to the model's dtype); every key and shape must match."""
        own = self.soul_state_dict()
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        if missing or unexpected:
            raise InputError(
                source,
                f"Soul layer keys do not match the model (missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})",
                "load it with the soul/config.json it was saved with",
            )
        for key, value in state_dict.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise InputError(source, f"{key} has shape {tuple(value.shape)}, model needs {tuple(own[key].shape)}", "check the audio settings")
        self.load_state_dict(state_dict, strict=False)

    # ------------------------------------------------------------------------------- forward

    def project_audio(self, audio_features: torch.Tensor) -> torch.Tensor:
        """Audio tokens `[B, N, F_lat, K, dim]` from windowed features `[B, N, F_lat, W, L, D_a]`.

        The tokens depend on neither the latents nor the timestep, so a sampler can compute them
        once per chunk and pass `audio_tokens=` to every step and guidance pass instead of
        re-running the projector (a wide MLP) 50 x 3 times.
        """
        return self.audio_projector(audio_features)

    def _audio_context(
        self,
        audio_features: torch.Tensor | None,
        audio_tokens: torch.Tensor | None,
        audio_masks: torch.Tensor | None,
        audio_frame_mask: torch.Tensor | None,
        grid: tuple[int, int, int, int],
        dtype: torch.dtype,
    ) -> _AudioContext:
        batch, frames, height, width = grid
        if audio_features is not None and audio_tokens is not None:
            raise InputError("audio_tokens", "given together with audio_features", "pass one of them")
        if audio_tokens is not None:
            name, given, layout = "audio_tokens", audio_tokens, "[B, N, F_lat, K, dim]"
            inner = self.config.num_attention_heads * self.config.attention_head_dim
            shape_ok = given.ndim == 5 and given.shape[3] == self.config.audio_tokens_per_frame and given.shape[4] == inner
        else:
            assert audio_features is not None
            name, given, layout = "audio_features", audio_features, "[B, N, F_lat, W, L, D_a]"
            shape_ok = given.ndim == 6
        if not shape_ok or given.shape[0] != batch or given.shape[2] != frames:
            raise InputError(
                name,
                f"shape {tuple(given.shape)} does not match batch {batch} and {frames} latent frames",
                f"give {layout} with F_lat equal to the latent frame count",
            )
        streams = given.shape[1]
        if streams > self.config.audio_max_streams:
            raise InputError(name, f"{streams} audio streams, the model allows {self.config.audio_max_streams}", "pass fewer speakers")
        if streams > 1 and audio_masks is None:
            raise InputError("audio_masks", f"{streams} audio streams need one spatial mask each", "give masks [B, N, H_lat, W_lat]")

        tokens = (self.project_audio(given) if audio_tokens is None else given).to(dtype)  # [B, N, F, K, D]
        k = tokens.shape[3]
        tokens = tokens.permute(0, 2, 1, 3, 4).reshape(batch * frames, streams * k, -1)

        attention_mask = None
        if audio_masks is not None:
            attention_mask, tokens = self._route(audio_masks, tokens, grid, streams, k)

        frame_gate = None
        if audio_frame_mask is not None:
            if tuple(audio_frame_mask.shape) != (batch, frames):
                raise InputError("audio_frame_mask", f"shape {tuple(audio_frame_mask.shape)} is not [B={batch}, F_lat={frames}]", "one flag per latent frame")
            gate = audio_frame_mask.to(device=tokens.device, dtype=torch.bool)
            frame_gate = gate[:, :, None].expand(batch, frames, height * width).reshape(batch, -1, 1)
        return _AudioContext(tokens, attention_mask, frame_gate, frames)

    def _route(
        self,
        audio_masks: torch.Tensor,
        tokens: torch.Tensor,
        grid: tuple[int, int, int, int],
        streams: int,
        tokens_per_frame: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention mask sending each video token to its speaker's audio or to the null token."""
        batch, frames, height, width = grid
        _, p_h, p_w = self.config.patch_size
        if audio_masks.ndim != 4 or tuple(audio_masks.shape[:2]) != (batch, streams) or tuple(audio_masks.shape[2:]) != (height * p_h, width * p_w):
            raise InputError(
                "audio_masks",
                f"shape {tuple(audio_masks.shape)} is not [B={batch}, N={streams}, H_lat={height * p_h}, W_lat={width * p_w}]",
                "give one mask per audio stream at latent resolution",
            )
        coverage = F.avg_pool2d(audio_masks.float().to(tokens.device), kernel_size=(p_h, p_w)).flatten(2)  # [B, N, h*w]
        best = coverage.argmax(dim=1)
        inside = coverage.max(dim=1).values >= MASK_THRESHOLD
        owner = torch.where(inside, best, torch.full_like(best, streams))  # stream index or N = null
        groups = torch.arange(streams, device=tokens.device).repeat_interleave(tokens_per_frame)
        groups = torch.cat([groups, groups.new_tensor([streams])])
        allowed = owner[:, :, None] == groups[None, None, :]  # [B, h*w, N*K + 1]
        allowed = allowed[:, None].expand(batch, frames, height * width, groups.numel())
        attention_mask = allowed.reshape(batch * frames, 1, height * width, groups.numel())
        null = self.audio_projector.null_token.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
        return attention_mask, torch.cat([tokens, null], dim=1)

    def _audio_block(
        self,
        block: WanTransformerBlock,
        audio_layer: AudioCrossAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor],
        audio_tokens: torch.Tensor,
        attention_mask: torch.Tensor | None,
        frame_gate: torch.Tensor | None,
        num_frames: int,
    ) -> torch.Tensor:
        """`WanTransformerBlock.forward` step for step, with the audio update after cross-attention."""
        if temb.ndim == 4:
            shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
                block.scale_shift_table.unsqueeze(0) + temb.float()
            ).chunk(6, dim=2)
            shift_msa, scale_msa, gate_msa = shift_msa.squeeze(2), scale_msa.squeeze(2), gate_msa.squeeze(2)
            c_shift_msa, c_scale_msa, c_gate_msa = c_shift_msa.squeeze(2), c_scale_msa.squeeze(2), c_gate_msa.squeeze(2)
        else:
            shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
                block.scale_shift_table + temb.float()
            ).chunk(6, dim=1)

        # 1. self-attention
        norm_hidden_states = (block.norm1(hidden_states.float()) * (1 + scale_msa) + shift_msa).type_as(hidden_states)
        attn_output = block.attn1(norm_hidden_states, None, None, rotary_emb)
        hidden_states = (hidden_states.float() + attn_output * gate_msa).type_as(hidden_states)

        # 2. text cross-attention
        norm_hidden_states = block.norm2(hidden_states.float()).type_as(hidden_states)
        attn_output = block.attn2(norm_hidden_states, encoder_hidden_states, None, None)
        hidden_states = hidden_states + attn_output

        # 2b. Soul: audio cross-attention, frame-local, zero-initialised
        audio_output = audio_layer(hidden_states, audio_tokens, num_frames, attention_mask)
        if frame_gate is None:
            hidden_states = hidden_states + audio_output
        else:
            hidden_states = torch.where(frame_gate, hidden_states + audio_output, hidden_states)

        # 3. feed-forward
        norm_hidden_states = (block.norm3(hidden_states.float()) * (1 + c_scale_msa) + c_shift_msa).type_as(hidden_states)
        ff_output = block.ffn(norm_hidden_states)
        hidden_states = (hidden_states.float() + ff_output.float() * c_gate_msa).type_as(hidden_states)
        return hidden_states

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        audio_features: torch.Tensor | None = None,
        audio_masks: torch.Tensor | None = None,
        audio_frame_mask: torch.Tensor | None = None,
        encoder_hidden_states_image: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        *,
        audio_tokens: torch.Tensor | None = None,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        """Velocity for latents `[B, C, F_lat, H_lat, W_lat]`; audio enters the chosen blocks.

        - `timestep`: `[B]`, or `[B, seq]` per token (TI2V: 0 on clean prefix frames).
        - `encoder_hidden_states`: text embeddings `[B, L_text, text_dim]`.
        - `audio_features`: `[B, N, F_lat, W, L, D_a]` windowed wav2vec2 hidden states, or None to
          skip audio entirely (the plain TI2V model). All-zero features are the learned audio
          "null" for guidance, which is not the same as None.
        - `audio_masks`: float `[B, N, H_lat, W_lat]`, one spatial mask per stream at latent
          resolution; a patch goes to the stream covering most of it (at least half), else to the
          null token. Optional when N = 1 (then every token hears stream 0); required when N > 1.
        - `audio_frame_mask`: bool `[B, F_lat]`, True where a latent frame receives audio; clean
          prefix frames (portrait, motion frames) should be False so they are left untouched.
        - `audio_tokens` (keyword only): `[B, N, F_lat, K, dim]` from `project_audio`, instead of
          `audio_features`, to skip the projector when the same audio serves many passes.
        """
        batch_size, _, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        post_patch_num_frames = num_frames // p_t
        post_patch_height = height // p_h
        post_patch_width = width // p_w

        rotary_emb = self.rope(hidden_states)

        hidden_states = self.patch_embedding(hidden_states)
        hidden_states = hidden_states.flatten(2).transpose(1, 2)
        hidden_states = hidden_states.contiguous()

        if timestep.ndim == 2:
            ts_seq_len = timestep.shape[1]
            timestep = timestep.flatten()
        else:
            ts_seq_len = None

        temb, timestep_proj, encoder_hidden_states, encoder_hidden_states_image = self.condition_embedder(
            timestep, encoder_hidden_states, encoder_hidden_states_image, timestep_seq_len=ts_seq_len
        )
        if ts_seq_len is not None:
            timestep_proj = timestep_proj.unflatten(2, (6, -1))
        else:
            timestep_proj = timestep_proj.unflatten(1, (6, -1))

        if encoder_hidden_states_image is not None:
            encoder_hidden_states = torch.concat([encoder_hidden_states_image, encoder_hidden_states], dim=1)

        audio = None
        if audio_features is not None or audio_tokens is not None:
            audio = self._audio_context(
                audio_features,
                audio_tokens,
                audio_masks,
                audio_frame_mask,
                (batch_size, post_patch_num_frames, post_patch_height, post_patch_width),
                hidden_states.dtype,
            )
        # The per-token tensors enter the blocks here: sequence parallelism splits them at this module.
        hidden_states, frame_gate = self.sequence_entry(hidden_states, None if audio is None else audio.frame_gate)
        if audio is not None:
            audio.frame_gate = frame_gate

        checkpointing = torch.is_grad_enabled() and self.gradient_checkpointing
        for index, block in enumerate(self.blocks):
            audio_layer = self.audio_layers[str(index)] if audio is not None and str(index) in self.audio_layers else None
            if audio_layer is None:
                args: tuple[Any, ...] = (hidden_states, encoder_hidden_states, timestep_proj, rotary_emb)
                if checkpointing:
                    hidden_states = self._gradient_checkpointing_func(block, *args)
                else:
                    hidden_states = block(*args)
                continue
            args = (
                block,
                audio_layer,
                hidden_states,
                encoder_hidden_states,
                timestep_proj,
                rotary_emb,
                audio.tokens,
                audio.attention_mask,
                audio.frame_gate,
                audio.num_frames,
            )
            if checkpointing:
                hidden_states = self._gradient_checkpointing_func(self._audio_block, *args)
            else:
                hidden_states = self._audio_block(*args)

        if temb.ndim == 3:
            shift, scale = (self.scale_shift_table.unsqueeze(0).to(temb.device) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift = shift.squeeze(2)
            scale = scale.squeeze(2)
        else:
            shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        shift = shift.to(hidden_states.device)
        scale = scale.to(hidden_states.device)

        hidden_states = (self.norm_out(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
        hidden_states = self.proj_out(hidden_states)

        hidden_states = hidden_states.reshape(
            batch_size, post_patch_num_frames, post_patch_height, post_patch_width, p_t, p_h, p_w, -1
        )
        hidden_states = hidden_states.permute(0, 7, 1, 4, 2, 5, 3, 6)
        output = hidden_states.flatten(6, 7).flatten(4, 5).flatten(2, 3)

        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)


def soul_kwargs(config: SoulConfig) -> dict[str, Any]:
    """The `audio_*` constructor arguments of `SoulTransformer3DModel` for a preset."""
    audio = config.audio
    return {
        "audio_feature_dim": config.audio_encoder.hidden_size,
        "audio_num_hidden_states": config.audio_encoder.num_hidden_states,
        "audio_window": audio.window,
        "audio_tokens_per_frame": audio.tokens_per_frame,
        "audio_token_dim": audio.token_dim,
        "audio_projector_hidden_dim": audio.projector_hidden_dim,
        "audio_block_indices": audio.block_indices(config.transformer.num_layers),
        "audio_max_streams": audio.max_streams,
    }


@torch.no_grad()
def cast_model(model: ModelT, dtype: torch.dtype) -> ModelT:
    """Cast parameters to `dtype` the way diffusers' `from_pretrained(torch_dtype=...)` does.

    diffusers keeps Wan's time embedder, modulation tables and norms in float32 even in a bf16
    model (`_keep_in_fp32_modules`); a plain `.to(bf16)` would not, and would make a model built
    here differ from the same weights loaded from disk.
    """
    keep = list(getattr(model, "_keep_in_fp32_modules", None) or []) if dtype != torch.float32 else []
    for name, param in model.named_parameters():
        target = torch.float32 if any(part in keep for part in name.split(".")) else dtype
        if param.dtype != target:
            param.data = param.data.to(target)
    return model


def build_transformer(
    config: SoulConfig,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    meta: bool = False,
) -> SoulTransformer3DModel:
    """A randomly initialised Soul transformer for a preset (on the meta device if `meta`)."""
    kwargs = {**config.transformer.kwargs(), **soul_kwargs(config)}
    if meta:
        with torch.device("meta"):
            return cast_model(SoulTransformer3DModel(**kwargs), dtype)
    model = SoulTransformer3DModel(**kwargs).to(device)
    return cast_model(model, dtype)
