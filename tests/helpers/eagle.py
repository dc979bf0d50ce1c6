"""A tiny Eagle-2-class VLM for tests: a SigLIP vision tower + projector + 3-layer Qwen3 LLM
(transformers' LlavaModel) and a word-level tokenizer, random weights, saved with
save_pretrained (no downloads)."""
from __future__ import annotations

from pathlib import Path

import torch

from lara_g1.lara.model import PolicyConfig

IMAGE_TOKEN = 299
WORDS = ["pick", "up", "the", "red", "cup", "put", "it", "in", "box", "do", "task"]


def save_tiny_eagle(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModel, LlavaConfig, PreTrainedTokenizerFast, Qwen3Config, SiglipVisionConfig

    torch.manual_seed(0)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=224, patch_size=32)
    text = Qwen3Config(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=256)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=IMAGE_TOKEN,
                         vision_feature_select_strategy="full", vision_feature_layer=-1, projector_hidden_act="gelu")
    AutoModel.from_config(config).save_pretrained(str(path))
    vocab = {"<pad>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>").save_pretrained(str(path))
    return path


def eagle_config(path: Path, **overrides) -> PolicyConfig:
    """The tiny preset on that VLM, features from LLM layer 2."""
    fields = {"backbone": "eagle", "backbone_path": str(path), "backbone_select_layer": 2, "vl_dim": 64,
                  "cross_attention_dim": 64, "tune_backbone": False, "max_text_len": 8}
    return PolicyConfig.from_preset("tiny", **{**fields, **overrides})
