"""Audio projector: windowed wav2vec2 hidden states -> a few audio tokens per latent frame.

Each latent frame gets a window of W video frames of features from L wav2vec2 hidden states. Which
layers matter for lips differs between checkpoints (shallow layers carry phonetics, deep ones
meaning), so the mix over layers is learned (softmax weights, uniform at start). The window is
flattened so the MLP sees the order of the frames (onsets and co-articulation) and lifted to K
tokens at the transformer's width, which the audio cross-attention then reads.

diffusers and transformers have no module of this shape, hence the hand-written MLP.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from soul.errors import InputError


class AudioProjector(nn.Module):
    """Maps `[B, N, F_lat, W, L, D_a]` audio features to `[B, N, F_lat, K, dim]` audio tokens.

    It also owns the learned null token `[1, dim]` that video tokens outside every speaker's mask
    attend to, so "nobody speaks here" is something the model learns rather than a zero vector.
    """

    def __init__(
        self,
        feature_dim: int,
        num_hidden_states: int,
        window: int,
        tokens_per_frame: int,
        token_dim: int,
        hidden_dim: int,
        out_dim: int,
    ) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.num_hidden_states = num_hidden_states
        self.window = window
        self.tokens_per_frame = tokens_per_frame
        self.token_dim = token_dim
        self.out_dim = out_dim
        self.layer_logits = nn.Parameter(torch.empty(num_hidden_states))
        self.proj_in = nn.Linear(window * feature_dim, hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.proj_tokens = nn.Linear(hidden_dim, tokens_per_frame * token_dim)
        self.norm = nn.LayerNorm(token_dim)
        self.proj_out = nn.Linear(token_dim, out_dim)
        self.null_token = nn.Parameter(torch.empty(1, out_dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise every parameter; callable again after `to_empty` when built on meta."""
        nn.init.zeros_(self.layer_logits)
        for linear in (self.proj_in, self.proj_tokens, self.proj_out):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        self.norm.reset_parameters()
        nn.init.normal_(self.null_token, std=1.0 / math.sqrt(self.out_dim))

    def layer_weights(self) -> torch.Tensor:
        """Softmax weights over the wav2vec2 hidden states, `[L]`, for inspection and logging."""
        return torch.softmax(self.layer_logits.float(), dim=0)

    def forward(self, audio_features: torch.Tensor) -> torch.Tensor:
        """`[B, N, F_lat, W, L, D_a]` -> `[B, N, F_lat, K, dim]` in the projector's dtype."""
        expected = (self.window, self.num_hidden_states, self.feature_dim)
        if audio_features.ndim != 6 or tuple(audio_features.shape[-3:]) != expected:
            raise InputError(
                "audio_features",
                f"shape {tuple(audio_features.shape)} is not [B, N, F_lat, W={expected[0]}, L={expected[1]}, D_a={expected[2]}]",
                "window the wav2vec2 hidden states with the preset's audio settings",
            )
        dtype = self.proj_in.weight.dtype
        weights = self.layer_weights().to(dtype)
        mixed = torch.einsum("bnfwld,l->bnfwd", audio_features.to(dtype), weights)
        hidden = self.act(self.proj_in(mixed.flatten(-2)))
        tokens = self.proj_tokens(hidden).unflatten(-1, (self.tokens_per_frame, self.token_dim))
        return self.proj_out(self.norm(tokens))
