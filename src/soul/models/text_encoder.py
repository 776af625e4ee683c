"""The umT5 prompt encoder, producing exactly the embeddings Wan2.2's transformer was trained on.

Soul keeps the backbone's text path untouched, so prompts must be encoded the way diffusers' Wan
pipelines encode them: ftfy + HTML-unescape + whitespace cleaning (diffusers' own
``prompt_clean``), padding to a fixed length with an attention mask, and every position past the
prompt's end set to zero. The transformer's text cross-attention sees those zeros; a different
padding convention would shift the conditioning the backbone knows.

Real weights come from the official ``Wan2.2-TI2V-5B-Diffusers`` layout (``text_encoder/`` and
``tokenizer/``). For tests and the miniature world, ``tiny``/``build`` make the same class at toy
size with a small in-memory Unigram vocabulary, so nothing is downloaded.
"""

from __future__ import annotations

import html
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Tokenizer, UMT5Config, UMT5EncoderModel

from soul.errors import InputError

if TYPE_CHECKING:
    from soul.config import SoulConfig

TEXT_ENCODER_DIR = "text_encoder"


def prompt_clean(text: str) -> str:
    """diffusers' Wan prompt cleaning (ftfy, double HTML-unescape, whitespace), written out here
    because importing it from `diffusers.pipelines.wan` loads every diffusers pipeline and costs
    seconds per run; tests/test_text_encoder.py checks it against diffusers' function."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()
TOKENIZER_DIR = "tokenizer"

# Words common in talking-video prompts, so the toy vocabulary tokenises them as single pieces
# and toy prompts differ in a handful of tokens rather than dozens of characters.
_TINY_WORDS = (
    "a the and of in with to is on at her his their man woman person people girl boy speaks talks "
    "sings talking speaking singing smiles smiling looks looking camera face head mouth eyes hair "
    "portrait video close up upper body full studio light lighting background soft warm natural "
    "realistic high quality detailed news anchor host two left right while gently clearly calm"
).split()


def tiny_vocab(size: int) -> list[tuple[str, float]]:
    """A deterministic Unigram vocabulary of at most ``size`` pieces: pad 0, eos 1, unk 2.

    Whole words score higher than their spelling, so the Unigram model prefers them; every
    printable ASCII character exists with and without the word-start marker, so any English
    prompt tokenises (other scripts map to unk).
    """
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    pieces += [("\u2581" + w, -1.0) for w in _TINY_WORDS]
    for c in string.ascii_lowercase + string.digits + string.ascii_uppercase + string.punctuation:
        pieces += [("\u2581" + c, -4.0), (c, -5.0)]
    if size < 4:
        raise InputError("vocab_size", f"{size} cannot hold pad, eos, unk and the word marker", "use at least 256")
    return pieces[:size]


class SoulTextEncoder:
    """umT5 encoder + tokenizer, frozen, used in inference mode only."""

    def __init__(
        self,
        model: UMT5EncoderModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int = 512,
        subfolder: str | None = TEXT_ENCODER_DIR,
        tokenizer_subfolder: str | None = TOKENIZER_DIR,
    ) -> None:
        if len(tokenizer) > model.config.vocab_size:
            raise InputError("tokenizer", f"has {len(tokenizer)} tokens but the encoder embeds {model.config.vocab_size}", "pair the tokenizer with its own text encoder")
        if max_length < 1:
            raise InputError("max_length", f"{max_length}", "use a positive token count (512 for Wan2.2)")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.subfolder = subfolder
        self.tokenizer_subfolder = tokenizer_subfolder

    # -------------------------------------------------------------------------------- building

    @classmethod
    def from_config(
        cls,
        config: UMT5Config | dict[str, Any],
        *,
        max_length: int = 512,
        seed: int | None = None,
        **kwargs: Any,
    ) -> SoulTextEncoder:
        """Random weights for a ``UMT5Config``, with a toy vocabulary sized to the config."""
        cfg = config if isinstance(config, UMT5Config) else UMT5Config(**config)
        if seed is None:
            model = UMT5EncoderModel(cfg)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = UMT5EncoderModel(cfg)
        tokenizer = T5Tokenizer(vocab=tiny_vocab(cfg.vocab_size), extra_ids=0)
        return cls(model, tokenizer, max_length=max_length, **kwargs)

    @classmethod
    def tiny(
        cls,
        *,
        d_model: int = 32,
        num_layers: int = 2,
        num_heads: int = 4,
        d_kv: int = 8,
        d_ff: int = 64,
        vocab_size: int = 384,
        max_length: int = 32,
        seed: int = 0,
    ) -> SoulTextEncoder:
        """A toy umT5 encoder (gated-GELU like umt5-xxl) that builds offline in milliseconds."""
        config = UMT5Config(
            vocab_size=vocab_size,
            d_model=d_model,
            d_kv=d_kv,
            d_ff=d_ff,
            num_layers=num_layers,
            num_heads=num_heads,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=max(16, max_length),
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
            dropout_rate=0.0,
        )
        return cls.from_config(config, max_length=max_length, seed=seed)

    @classmethod
    def build(cls, config: SoulConfig, *, seed: int | None = None) -> SoulTextEncoder:
        """Random weights at the preset's size (the tiny preset's tests and smoke runs)."""
        te = config.text_encoder
        return cls.from_config(
            dict(te.config), max_length=te.max_length, seed=seed, subfolder=te.subfolder, tokenizer_subfolder=te.tokenizer_subfolder
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        config: SoulConfig | None = None,
        *,
        torch_dtype: torch.dtype | str = "auto",
        local_files_only: bool = True,
        max_length: int | None = None,
    ) -> SoulTextEncoder:
        """Load ``text_encoder/`` and ``tokenizer/`` of a checkpoint directory (or cached hub id).

        The subfolders and the token length come from the preset when given, else the official
        layout's names and 512 tokens. ``torch_dtype="auto"`` keeps the checkpoint's dtype
        (bfloat16 for the official umT5-XXL: 11 GB instead of 27 GB in float32).
        """
        te = config.text_encoder if config is not None else None
        subfolder = te.subfolder if te is not None else TEXT_ENCODER_DIR
        tok_subfolder = te.tokenizer_subfolder if te is not None else TOKENIZER_DIR
        length = max_length or (te.max_length if te is not None else 512)
        source = str(path)
        fix = "download the checkpoint with `soul download`, or point at a directory written by save_pretrained"
        try:
            model = UMT5EncoderModel.from_pretrained(
                source, subfolder=subfolder or "", dtype=torch_dtype, local_files_only=local_files_only
            )
        except OSError as err:
            raise InputError(Path(source) / (subfolder or ""), "text encoder weights not found", fix) from err
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, subfolder=tok_subfolder or "", local_files_only=local_files_only)
        except OSError as err:
            raise InputError(Path(source) / (tok_subfolder or ""), "tokenizer files not found", fix) from err
        return cls(model, tokenizer, max_length=length, subfolder=subfolder, tokenizer_subfolder=tok_subfolder)

    def save_pretrained(self, root: str | Path) -> Path:
        """Write ``root/text_encoder`` and ``root/tokenizer`` (the official layout)."""
        out = Path(root)
        self.model.save_pretrained(out / (self.subfolder or ""), safe_serialization=True)
        self.tokenizer.save_pretrained(out / (self.tokenizer_subfolder or ""))
        return out

    # -------------------------------------------------------------------------------- encoding

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.d_model)

    @torch.no_grad()
    def encode(self, prompts: str | Sequence[str], max_length: int | None = None) -> torch.Tensor:
        """``[B, max_length, d_model]`` embeddings in the encoder's dtype and device.

        Positions past each prompt's end (its eos included in the prompt) are exactly zero, as
        diffusers' Wan pipelines produce; prompts longer than ``max_length`` are truncated.
        """
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        if not batch:
            raise InputError("prompt", "an empty list of prompts", "pass at least one prompt (an empty string is fine)")
        for n, p in enumerate(batch):
            if not isinstance(p, str):
                raise InputError(f"prompt[{n}]", f"got {type(p).__name__}", "pass prompts as strings")
        length = self.max_length if max_length is None else int(max_length)
        if length < 1:
            raise InputError("max_length", f"{length}", "use a positive token count")
        tokens = self.tokenizer(
            [prompt_clean(p) for p in batch],
            padding="max_length",
            max_length=length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = next(self.model.parameters()).device
        ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        # where(), not a product: a non-finite value at a padded position must still become 0.
        return torch.where(mask[..., None].bool(), hidden, torch.zeros((), dtype=hidden.dtype, device=device))
