"""Test assets for the Eagle backbone (no downloads): a tiny tokenizer in the compact vocabulary of
the GR00T N1.5 parity fixture (``tests/data/gr00t_n15_tiny/eagle``), a backbone directory with the
fixture's weights, and a GR00T-style ``eagle2_hg_model`` assets directory.

The fixture's tiny LLM has a 35-token vocabulary: compact id i stands for the real Qwen3 token
``vocab_map[i]`` (``expected.safetensors``). :func:`tiny_tokenizer` puts the same strings at the
same compact ids: word level, split by a regex that cuts the fixture's texts exactly where Qwen3's
BPE does (a word with its leading space, one digit, one punctuation mark, a space, a newline), so
it gives the fixture's ``input_ids`` for its prompts. Special tokens (compact id: real id):
``<|endoftext|>`` 29: 151643, ``<|im_start|>`` 30: 151644, ``<|im_end|>`` 31: 151645,
``<IMG_CONTEXT>`` 32: 151669, ``<img>`` 33: 151670, ``</img>`` 34: 151671. A word outside the
vocabulary becomes ``<|endoftext|>`` (id 29, still inside the tiny LLM's embedding table).

GR00T N1.6 (``tests/data/gr00t_n16_tiny``): :func:`tiny_n16_tokenizer` does the same over that
fixture's own 31-token ``vocab_map`` (:data:`N16_FIXTURE_VOCAB`; ``<|endoftext|>`` 25: 151643,
``<|im_start|>`` 26, ``<|im_end|>`` 27, ``<IMG_CONTEXT>`` 28: 151669, ``<img>`` 29, ``</img>`` 30), and
:func:`write_gr00t_n16_assets` writes a GR00T N1.6-style ``Eagle-Block2A-2B-v2`` assets directory.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from lara_g1.lara.model import PolicyConfig

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "data" / "gr00t_n15_tiny" / "eagle"

#: compact id -> (token text, real Qwen3 id); the real ids are the fixture's vocab_map
FIXTURE_VOCAB = [
    (".", 13), ("1", 16), ("<", 27), (">", 29), ("\n", 198), (" ", 220), (" a", 264), (" the", 279),
    (" in", 304), (" and", 323), (" are", 525), ("put", 628), (" up", 705), ("user", 872), ("image", 1805),
    (" top", 1909), (" red", 2518), ("You", 2610), (" close", 3265), (" green", 6176), ("system", 8948),
    (" helpful", 10950), (" assistant", 17847), (" bowl", 19212), (" apple", 23268), (" cube", 23739),
    (" drawer", 26482), ("pick", 29245), ("assistant", 77091),
    ("<|endoftext|>", 151643), ("<|im_start|>", 151644), ("<|im_end|>", 151645),
    ("<IMG_CONTEXT>", 151669), ("<img>", 151670), ("</img>", 151671),
]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<IMG_CONTEXT>", "<img>", "</img>"]
COMPACT_IDS = {text: i for i, (text, _) in enumerate(FIXTURE_VOCAB)}
IMAGE_TOKEN = COMPACT_IDS["<IMG_CONTEXT>"]   # 32, the fixture config's image_token_index
PAD_TOKEN = COMPACT_IDS["<|endoftext|>"]     # 29
SELECT_LAYER = 2                             # the fixture's backbone_cfg.select_layer
# Qwen3's pre-tokenisation, reduced to what the fixture's texts need
_SPLIT = r" ?\p{L}+|\p{N}|[^\s\p{L}\p{N}]| |\n"


def tiny_tokenizer():
    """A ``PreTrainedTokenizerFast`` over :data:`FIXTURE_VOCAB` (35 tokens, GR00T's special tokens)."""
    return _compact_tokenizer(FIXTURE_VOCAB)


def _compact_tokenizer(fixture_vocab):
    """A word-level tokenizer whose ids are a fixture's compact vocabulary, split as Qwen3 splits."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {text: i for i, (text, _) in enumerate(fixture_vocab)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                   padding_side="left")


def fixture_eagle_config() -> dict:
    """The fixture's Eagle 2.5 ``config.json`` (GR00T's ``eagle2_hg_model/config.json`` format)."""
    return json.loads((FIXTURE_DIR / "eagle2_hg_model" / "config.json").read_text())


def fixture_gr00t_config() -> dict:
    """The fixture's GR00T N1.5 ``config.json`` (``backbone_cfg.select_layer`` 2)."""
    return json.loads((FIXTURE_DIR / "config.json").read_text())


def write_gr00t_assets(path: Path) -> Path:
    """A GR00T-style assets directory ``path/eagle2_hg_model`` (the fixture's ``config.json`` and
    ``processor_config.json`` + :func:`tiny_tokenizer`); returns that ``eagle2_hg_model`` directory."""
    out = Path(path) / "eagle2_hg_model"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "processor_config.json"):
        shutil.copyfile(FIXTURE_DIR / "eagle2_hg_model" / name, out / name)
    tiny_tokenizer().save_pretrained(str(out))
    return out


def save_tiny_eagle(path: Path) -> Path:
    """A ``backbone_path`` directory: the fixture's Eagle config, its weights in GR00T's names
    (``backbone.eagle_model.*``, only 2 of 3 LLM layers stored) and :func:`tiny_tokenizer`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE_DIR / "eagle2_hg_model" / "config.json", path / "config.json")
    shutil.copyfile(FIXTURE_DIR / "model.safetensors", path / "model.safetensors")
    tiny_tokenizer().save_pretrained(str(path))
    return path


def eagle_config(path: Path | None = None, **overrides) -> PolicyConfig:
    """The tiny preset on the fixture's Eagle backbone (56 px, LLM 32 wide, features of layer 2):
    from ``path`` (:func:`save_tiny_eagle`) or, without one, from the stored config (random weights)."""
    from lara_g1.lara.model.eagle import eagle_config_from_gr00t

    fields = {"backbone": "eagle", "backbone_select_layer": SELECT_LAYER, "vl_dim": 32, "cross_attention_dim": 32,
              "image_size": 56, "tune_backbone": False, "max_text_len": 16}
    if path is None:
        fields["backbone_hf_config"] = eagle_config_from_gr00t(fixture_gr00t_config(), fixture_eagle_config())
    else:
        fields["backbone_path"] = str(path)
    return PolicyConfig.from_preset("tiny", **{**fields, **overrides})


# ---- GR00T N1.6 (tests/data/gr00t_n16_tiny) ----------------------------------------------------------------

N16_DIR = Path(__file__).resolve().parents[1] / "data" / "gr00t_n16_tiny"
N16_EAGLE_DIR = N16_DIR / "eagle"
N16_PROCESSOR_DIR = N16_DIR / "processor"
#: compact id -> (token text, real Qwen3 id); the real ids are the N1.6 fixture's vocab_map
N16_FIXTURE_VOCAB = [
    (".", 13), ("1", 16), ("<", 27), (">", 29), ("\n", 198), (" ", 220), (" a", 264), (" the", 279),
    (" in", 304), (" it", 432), (" are", 525), (" up", 705), ("user", 872), (" then", 1221), ("image", 1805),
    (" put", 2182), (" red", 2518), ("You", 2610), ("system", 8948), (" helpful", 10950), (" assistant", 17847),
    (" bowl", 19212), (" cube", 23739), ("pick", 29245), ("wave", 30398),
    ("<|endoftext|>", 151643), ("<|im_start|>", 151644), ("<|im_end|>", 151645),
    ("<IMG_CONTEXT>", 151669), ("<img>", 151670), ("</img>", 151671),
]
N16_COMPACT_IDS = {text: i for i, (text, _) in enumerate(N16_FIXTURE_VOCAB)}
N16_IMAGE_TOKEN = N16_COMPACT_IDS["<IMG_CONTEXT>"]   # 28, the N1.6 Eagle config's image_token_index
N16_PAD_TOKEN = N16_COMPACT_IDS["<|endoftext|>"]     # 25
N16_SELECT_LAYER = 2                                 # the N1.6 fixture's select_layer
N16_ASSETS_SUBDIR = "Eagle-Block2A-2B-v2"            # where GR00T N1.6 keeps the Eagle config + tokenizer


def tiny_n16_tokenizer():
    """A ``PreTrainedTokenizerFast`` over :data:`N16_FIXTURE_VOCAB` (31 tokens, GR00T's special tokens)."""
    return _compact_tokenizer(N16_FIXTURE_VOCAB)


def fixture_n16_eagle_config() -> dict:
    """The N1.6 fixture's Eagle 3 ``config.json`` (GR00T's ``Eagle-Block2A-2B-v2/config.json`` format)."""
    return json.loads((N16_EAGLE_DIR / "config.json").read_text())


def fixture_n16_gr00t_config() -> dict:
    """The N1.6 fixture's GR00T ``config.json`` (``select_layer`` 2, ``backbone_embedding_dim`` 48)."""
    return json.loads((N16_DIR / "config.json").read_text())


def write_gr00t_n16_assets(path: Path) -> Path:
    """A GR00T N1.6-style assets directory ``path/Eagle-Block2A-2B-v2`` (the fixture's Eagle 3
    ``config.json`` + :func:`tiny_n16_tokenizer`); returns that directory."""
    out = Path(path) / N16_ASSETS_SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(N16_EAGLE_DIR / "config.json", out / "config.json")
    tiny_n16_tokenizer().save_pretrained(str(out))
    return out


def n16_eagle_config(**overrides) -> PolicyConfig:
    """The tiny preset on the N1.6 fixture's Eagle 3 backbone from its stored config (random weights
    until loaded): LLM 48 wide, features of layer 2, GR00T N1.6's image chain at the fixture's sizes
    (40 x 60 camera -> 56 x 84 pixels, 6 image tokens), 11 instruction tokens (prompt length 40),
    GR00T N1.6's alternating text/image cross-attention."""
    from lara_g1.lara.model.eagle3 import eagle3_config_from_gr00t

    fields = {"backbone": "eagle3", "backbone_select_layer": N16_SELECT_LAYER, "vl_dim": 48, "cross_attention_dim": 48,
              "backbone_hf_config": eagle3_config_from_gr00t(fixture_n16_gr00t_config(), fixture_n16_eagle_config()),
              "image_pipeline": "gr00t_n16", "camera_size": [40, 60], "shortest_image_edge": 56,
              "image_crop_scale": 0.95, "tune_backbone": False, "max_text_len": 11, "mask_vl_padding": True,
              "vl_cross_attention": "alternate"}
    return PolicyConfig.from_preset("tiny", **{**fields, **overrides})
