"""The offline Molmo2 checkpoint builder: what it writes loads through the Auto classes."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from molmo_rag.errors import ConfigurationError  # noqa: E402
from molmo_rag.testing.tiny_molmo2 import (  # noqa: E402
    MEDIA_TOKENS,
    SPECIAL_TOKENS,
    TINY,
    Molmo2Sizes,
    build_tiny_molmo2,
    make_config,
    make_tokenizer,
)


@pytest.fixture(scope="module")
def loaded(tiny_molmo2_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_molmo2_path, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(tiny_molmo2_path, local_files_only=True)
    return processor, model


def test_loads_as_native_molmo2_without_remote_code(loaded, tiny_molmo2_path):
    processor, model = loaded
    assert type(model).__name__ == "Molmo2ForConditionalGeneration"
    assert type(model).__module__.startswith("transformers.models.molmo2")
    assert type(processor).__name__ == "Molmo2Processor"
    assert type(processor.image_processor).__name__ == "Molmo2ImageProcessor"
    assert type(processor.video_processor).__name__ == "Molmo2VideoProcessor"
    config = json.loads((tiny_molmo2_path / "config.json").read_text())
    assert "auto_map" not in config  # nothing that would pull remote code
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_every_token_id_matches_the_tokenizer(loaded):
    processor, model = loaded
    tok, cfg = processor.tokenizer, model.config
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS + MEDIA_TOKENS}
    assert len(set(ids.values())) == len(ids) and tok.unk_token_id not in ids.values()
    assert cfg.image_start_token_id == ids["<im_start>"]
    assert cfg.low_res_image_start_token_id == ids["<low_res_im_start>"]
    assert cfg.image_end_token_id == ids["<im_end>"]
    assert cfg.image_patch_id == cfg.image_token_id == ids["<im_patch>"]
    assert cfg.frame_start_token_id == ids["<frame_start>"]
    assert cfg.frame_end_token_id == ids["<frame_end>"]
    assert tok.bos_token == tok.eos_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == ids["<|im_end|>"]
    # The LM head can emit the chat tokens; the media placeholders only need embeddings.
    text = cfg.text_config
    assert ids["<|im_end|>"] < text.vocab_size
    assert max(ids.values()) < text.vocab_size + text.additional_vocab_size


def test_crop_size_matches_the_vision_tower(loaded):
    processor, model = loaded
    image_size = model.config.vision_config.image_size
    assert processor.image_processor.size["height"] == image_size[0] == TINY.crop_size
    assert processor.video_processor.size["height"] == image_size[0]
    assert processor.image_processor.patch_size == model.config.vision_config.patch_size


def test_byte_level_tokenizer_round_trips_any_text(loaded):
    tok = loaded[0].tokenizer
    text = "Zählen: 3 <points coords=\"1 1 460 588\">cups</points> 🐱\n"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    # Special tokens stay single tokens inside text.
    assert tok.encode("<im_patch><im_patch>", add_special_tokens=False) == [tok.convert_tokens_to_ids("<im_patch>")] * 2


def test_chat_template_puts_media_first(loaded):
    processor = loaded[0]
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, {"type": "image"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n<|image|>What is it?<|im_end|>\n<|im_start|>assistant\n"


def test_rebuild_is_cached_and_deterministic(tiny_molmo2_path, tmp_path):
    from safetensors.torch import load_file

    weights = tiny_molmo2_path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_molmo2(tiny_molmo2_path) == tiny_molmo2_path
    assert weights.stat().st_mtime_ns == before  # returned as is, not rebuilt

    other = build_tiny_molmo2(tmp_path / "again")
    first, second = load_file(weights), load_file(other / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(first[k].equal(second[k]) for k in first)

    reseeded = load_file(build_tiny_molmo2(tmp_path / "seed1", seed=1) / "model.safetensors")
    assert not all(first[k].equal(reseeded[k]) for k in first)
    assert not list(tmp_path.glob(".*"))  # no staging folder left behind


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigurationError):
        build_tiny_molmo2(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_other_sizes_rebuild_instead_of_reusing(tiny_molmo2_path, tmp_path):
    target = tmp_path / "m"
    build_tiny_molmo2(target)
    with pytest.raises(ConfigurationError):  # same folder, different architecture: not silently reused
        build_tiny_molmo2(target, sizes=Molmo2Sizes(text_layers=1))


def test_padded_vocabulary_keeps_ids_consistent():
    tok = make_tokenizer()
    config = make_config(tok, Molmo2Sizes(vocab_size=1024, additional_vocab_size=128))
    assert config.text_config.vocab_size == 1024
    assert config.text_config.additional_vocab_size == 128
    assert config.image_patch_id == tok.convert_tokens_to_ids("<im_patch>")
