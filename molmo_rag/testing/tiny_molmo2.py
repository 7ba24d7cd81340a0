"""Offline Molmo2 checkpoints for tests, examples and benchmarks.

:func:`build_tiny_molmo2` writes a small random-init checkpoint of transformers' native
Molmo2 (config, weights, tokenizer, image and video processors, chat template) that loads
through ``AutoProcessor`` / ``AutoModelForImageTextToText`` without ``trust_remote_code``
and without any network access. Its answers are noise, but every code path between a
:class:`~molmo_rag.media.items.MediaItem` and a decoded answer is the real one. The noise
reads as words ("harbor quietly lamp ..."), not as bytes: the tokenizer's generable
vocabulary is a few hundred plain English words (:data:`WORDS`), while byte fallback still
tokenizes any prompt.

The pieces (:func:`make_tokenizer`, :func:`make_processor`, :func:`make_config`) are public
so that benchmarks can build larger architectures in memory from the same parts.

Requires the ``local`` extra (torch, torchvision, transformers) and ``tokenizers``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    from transformers import Molmo2Config, Molmo2Processor, PreTrainedTokenizerBase

__all__ = [
    "Molmo2Sizes",
    "TINY",
    "MOLMO2_4B",
    "SPECIAL_TOKENS",
    "MEDIA_TOKENS",
    "WORDS",
    "CHAT_TEMPLATE",
    "make_tokenizer",
    "make_processor",
    "make_config",
    "random_model",
    "build_tiny_molmo2",
]

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
"""Chat control tokens; they sit in the base vocabulary, so the LM head can emit them."""
MEDIA_TOKENS = [
    "<|image|>",
    "<|video|>",
    "<im_patch>",
    "<im_col>",
    "<im_start>",
    "<low_res_im_start>",
    "<frame_start>",
    "<im_end>",
    "<frame_end>",
    "<im_low>",
]
"""Placeholders the Molmo2 processor looks up; like the released checkpoints, they live in
the model's *additional* vocabulary (embedded, never generated)."""

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}"
    # Molmo2 reads media first: placeholders go before any text, whatever the order given.
    "{%- for part in message['content'] if part['type'] == 'image' -%}{{- '<|image|>' -}}{%- endfor -%}"
    "{%- for part in message['content'] if part['type'] == 'video' -%}{{- '<|video|>' -}}{%- endfor -%}"
    "{%- for part in message['content'] if part['type'] == 'text' -%}{{- part['text'] -}}{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

WORDS = tuple(
    """
    a an the of in on at to by for with from under over near into
    and or but so then while after again also still only just very
    red blue green yellow white black grey brown orange pink pale dark bright warm cool
    soft loud quiet calm busy empty full small large tall short long wide flat old new young
    early late quick slow heavy light clear sunny rainy wet dry clean smooth rough
    happy tired brave proud shy
    cat dog bird horse fish bear fox deer owl bee cow sheep duck mouse
    man woman child girl boy people person crowd friend pilot
    house room door window wall roof floor table chair bed lamp clock shelf book page map
    cup mug plate bowl spoon bottle jar glass bread apple lemon cake coffee tea milk soup rice
    car bus train boat ship plane bike truck road street bridge harbor market garden park
    tree leaf flower grass forest river lake sea beach sand stone rock hill field
    sky sun moon star cloud rain snow wind storm fire smoke shadow night
    city town school office shop tower farm camp
    hat coat shirt dress shoe bag box rope wheel fence gate path
    chart graph slide screen photo sign label note card
    rocket space suit coin ring key bell drum piano song
    walks runs sits stands jumps swims flies reads writes sings waits looks holds opens
    smiles sleeps plays works rests turns falls grows shines glows drifts
    quietly slowly softly gently maybe inside
    here far away home left right center corner edge middle top bottom side front back
    """.split()
)
"""What the tiny model can say: each word is one token with a leading space ("Ġlamp"),
so random weights decode to a run of words. No number words and no phrase the count
parser reads ("there are", "a total of", "none"): noise never becomes a count."""

_PUNCTUATION = (".", ",")
"""Byte symbols the model may also emit, between words."""

_MARKER = "molmo_rag_checkpoint.json"
_BUILDER_VERSION = 2  # 2: a vocabulary of words (1 was one token per byte)


class Molmo2Sizes(BaseModel):
    """Architecture sizes of a Molmo2 built from scratch (the token ids come from the tokenizer)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text_hidden_size: int = Field(32, description="Hidden size of the language model.")
    text_layers: int = Field(2, description="Decoder layers of the language model.")
    text_heads: int = Field(4, description="Query heads of the language model.")
    text_kv_heads: int = Field(2, description="Key/value heads of the language model.")
    text_head_dim: int = Field(8, description="Head size of the language model.")
    text_intermediate_size: int = Field(64, description="MLP width of the language model.")
    vocab_size: int | None = Field(
        None, description="Base vocabulary size; None = exactly the tokenizer's base vocabulary."
    )
    additional_vocab_size: int = Field(
        0, description="Embedding-only rows past the base vocabulary (at least what the media tokens need)."
    )
    vision_hidden_size: int = Field(32, description="Hidden size of the vision transformer.")
    vision_layers: int = Field(2, description="Layers of the vision transformer.")
    vision_heads: int = Field(4, description="Heads of the vision transformer.")
    vision_head_dim: int = Field(8, description="Head size of the vision transformer.")
    vision_intermediate_size: int = Field(64, description="MLP width of the vision transformer.")
    vision_feature_layers: list[int] = Field(
        [-1, -2], description="ViT layers whose outputs the adapter concatenates."
    )
    adapter_intermediate_size: int = Field(64, description="MLP width of the vision-to-text projector.")
    crop_size: int = Field(56, description="Square crop side in pixels (the ViT's input size).")
    patch_size: int = Field(14, description="ViT patch side in pixels.")
    max_crops: int = Field(4, description="Most high-resolution crops per image.")
    overlap_margins: list[int] = Field([1, 1], description="Crop overlap margins, in patches.")
    image_pooling: list[int] = Field([2, 2], description="Patches pooled into one image token (h, w).")
    video_pooling: list[int] = Field([2, 2], description="Patches pooled into one frame token (h, w).")
    max_position_embeddings: int = Field(4096, description="Longest sequence the text model accepts.")
    rope_theta: float = Field(1_000_000.0, description="RoPE base frequency.")
    initializer_range: float = Field(
        0.5,
        description="Std of the random weight init; large enough that answers depend on the pixels.",
    )


TINY = Molmo2Sizes()
"""About 110k parameters: loads, and answers an image on CPU, in a fraction of a second."""

MOLMO2_4B = Molmo2Sizes(
    text_hidden_size=2560,
    text_layers=36,
    text_heads=32,
    text_kv_heads=8,
    text_head_dim=128,
    text_intermediate_size=9728,
    vocab_size=151936,
    additional_vocab_size=128,
    max_position_embeddings=36864,
    vision_hidden_size=1152,
    vision_layers=25,
    vision_heads=16,
    vision_head_dim=72,
    vision_intermediate_size=4304,
    vision_feature_layers=[24, 18],
    adapter_intermediate_size=9728,
    crop_size=378,
    patch_size=14,
    max_crops=8,
    overlap_margins=[4, 4],
    image_pooling=[2, 2],
    video_pooling=[3, 3],
    initializer_range=0.02,
)
"""The architecture of ``allenai/Molmo2-4B`` (Qwen3-4B text model, SigLIP-so400m ViT trimmed
to the 25 layers it reads): 4.85 B parameters, like the release. The projector width is
inferred from that parameter count. For benchmarks: build it in memory with random weights."""


def _require_local() -> None:
    try:
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "transformers", "local", "building a Molmo2 checkpoint") from exc


def make_tokenizer() -> "PreTrainedTokenizerBase":
    """A byte-level BPE tokenizer whose generable tokens are words, with Molmo2's special tokens.

    Ids, in order: the three chat control tokens (pad = ``<|endoftext|>`` = 0); the words
    of :data:`WORDS` with a leading space (``Ġlamp``) and ``.`` ``,``: the base vocabulary,
    what the LM head can emit; the media placeholders; then what only prompts need: the
    other byte symbols (byte fallback: any text tokenizes and round-trips) and the word
    prefixes the merges pass through. Merges build each word left to right from its
    leading space, so a listed word in a prompt is one token.
    """
    _require_local()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    space = "\u0120"  # the byte-level symbol of " "
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    words = [space + word for word in dict.fromkeys(WORDS)]
    merges: list[tuple[str, str]] = []
    prefixes: list[str] = []
    seen: set[str] = set()
    for word in words:
        left = word[0]
        for char in word[1:]:
            merged = left + char
            if merged not in seen:
                seen.add(merged)
                merges.append((left, char))
                prefixes.append(merged)
            left = merged
    order = SPECIAL_TOKENS + words + list(_PUNCTUATION) + MEDIA_TOKENS + alphabet + prefixes
    vocab: dict[str, int] = {}
    for token in order:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS + MEDIA_TOKENS)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_end|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )
    return tokenizer


def make_processor(tokenizer: "PreTrainedTokenizerBase", sizes: Molmo2Sizes = TINY) -> "Molmo2Processor":
    """Molmo2's processor with image and video processors matched to ``sizes``."""
    _require_local()
    from transformers import Molmo2ImageProcessor, Molmo2Processor, Molmo2VideoProcessor

    crop = {"height": sizes.crop_size, "width": sizes.crop_size}
    image_processor = Molmo2ImageProcessor(
        size=crop,
        patch_size=sizes.patch_size,
        max_crops=sizes.max_crops,
        overlap_margins=list(sizes.overlap_margins),
        pooling_size=list(sizes.image_pooling),
    )
    video_processor = Molmo2VideoProcessor(
        size=crop, patch_size=sizes.patch_size, pooling_size=list(sizes.video_pooling)
    )
    return Molmo2Processor(
        image_processor=image_processor,
        video_processor=video_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def make_config(tokenizer: "PreTrainedTokenizerBase", sizes: Molmo2Sizes = TINY) -> "Molmo2Config":
    """A Molmo2Config whose every token id is the tokenizer's id for that token."""
    _require_local()
    from transformers import Molmo2Config

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS + MEDIA_TOKENS}
    base_vocab = min(ids[t] for t in MEDIA_TOKENS)
    vocab_size = sizes.vocab_size or base_vocab
    if vocab_size < min(ids[t] for t in SPECIAL_TOKENS) + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size {vocab_size} leaves the chat tokens out of the LM head")
    # Ids past the base vocabulary (media placeholders, byte fallback, word prefixes) index
    # the additional, embedding-only rows: every id the tokenizer makes must have one.
    additional = max(sizes.additional_vocab_size, max(ids.values()) + 1 - vocab_size, len(tokenizer) - vocab_size)

    text_config = {
        "hidden_size": sizes.text_hidden_size,
        "num_hidden_layers": sizes.text_layers,
        "num_attention_heads": sizes.text_heads,
        "num_key_value_heads": sizes.text_kv_heads,
        "head_dim": sizes.text_head_dim,
        "intermediate_size": sizes.text_intermediate_size,
        "vocab_size": vocab_size,
        "additional_vocab_size": additional,
        "max_position_embeddings": sizes.max_position_embeddings,
        "rope_parameters": {"rope_type": "default", "rope_theta": sizes.rope_theta},
        "initializer_range": sizes.initializer_range,
    }
    vision_config = {
        "hidden_size": sizes.vision_hidden_size,
        "intermediate_size": sizes.vision_intermediate_size,
        "num_hidden_layers": sizes.vision_layers,
        "num_attention_heads": sizes.vision_heads,
        "num_key_value_heads": sizes.vision_heads,
        "head_dim": sizes.vision_head_dim,
        "image_size": [sizes.crop_size, sizes.crop_size],
        "patch_size": sizes.patch_size,
        "initializer_range": sizes.initializer_range,
    }
    adapter_config = {
        "vision_feature_layer": list(sizes.vision_feature_layers),
        "hidden_size": sizes.vision_hidden_size,
        "num_attention_heads": sizes.vision_heads,
        "num_key_value_heads": sizes.vision_heads,
        "head_dim": sizes.vision_head_dim,
        "intermediate_size": sizes.adapter_intermediate_size,
        "text_hidden_size": sizes.text_hidden_size,
        "initializer_range": sizes.initializer_range,
    }
    return Molmo2Config(
        text_config=text_config,
        vision_config=vision_config,
        adapter_config=adapter_config,
        image_start_token_id=ids["<im_start>"],
        low_res_image_start_token_id=ids["<low_res_im_start>"],
        image_end_token_id=ids["<im_end>"],
        image_patch_id=ids["<im_patch>"],
        frame_start_token_id=ids["<frame_start>"],
        frame_end_token_id=ids["<frame_end>"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=sizes.initializer_range,
    )


def random_model(config: "Molmo2Config", *, seed: int = 0, dtype: Any = None, device: Any = None):
    """A Molmo2ForConditionalGeneration with seeded random weights (global RNG untouched)."""
    _require_local()
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if device is not None:
            with torch.device(device):
                model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
        else:
            model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    return model.eval()


def _marker_of(path: Path) -> dict | None:
    """The marker of a checkpoint this module built at ``path``, or None."""
    marker = path / _MARKER
    if not marker.is_file():
        return None
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _is_built(path: Path, sizes: Molmo2Sizes, seed: int) -> bool:
    return _marker_of(path) == _marker_info(sizes, seed)


def _is_outdated(path: Path) -> bool:
    """A checkpoint an older version of this builder wrote (e.g. the byte vocabulary):
    rebuilt in place, whatever its sizes."""
    info = _marker_of(path)
    if info is None or "builder_version" not in info:
        return False
    version = info["builder_version"]
    return isinstance(version, int) and version < _BUILDER_VERSION


def _marker_info(sizes: Molmo2Sizes, seed: int) -> dict:
    return {"builder_version": _BUILDER_VERSION, "seed": seed, "sizes": sizes.model_dump()}


@contextlib.contextmanager
def _quiet_progress():
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def build_tiny_molmo2(path: str | os.PathLike, *, sizes: Molmo2Sizes = TINY, seed: int = 0) -> Path:
    """Build (once) and save a random-init Molmo2 checkpoint at ``path``; return the path.

    Deterministic for a given ``sizes`` and ``seed``. If ``path`` already holds a checkpoint
    this function built with the same sizes and seed, it is returned as is; one an older
    version of this function built is replaced. The files are written to a sibling
    temporary folder first and moved into place, so an interrupted build never leaves a
    half checkpoint behind.
    """
    _require_local()
    path = Path(path)
    if _is_built(path, sizes, seed):
        return path
    outdated = _is_outdated(path)
    if path.exists() and not outdated and any(path.iterdir()):
        raise ConfigurationError(f"{path} exists and is not a checkpoint built by build_tiny_molmo2")

    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        tokenizer = make_tokenizer()
        processor = make_processor(tokenizer, sizes)
        config = make_config(tokenizer, sizes)
        model = random_model(config, seed=seed)
        with _quiet_progress():  # one file of a few hundred kB: no bar in logs and notebooks
            model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / _MARKER).write_text(json.dumps(_marker_info(sizes, seed), indent=2))
        old = None
        if outdated and path.exists():  # moved aside whole, removed once the new one is in place
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}-old-", dir=path.parent))
            with contextlib.suppress(OSError):  # someone else moved it first
                path.rename(old / path.name)
        if path.exists() and not any(path.iterdir()):
            with contextlib.suppress(OSError):
                path.rmdir()
        try:
            staging.rename(path)
        except OSError:
            # Someone else finished the same build first.
            if not _is_built(path, sizes, seed):
                raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return path
