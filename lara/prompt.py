"""GR00T's prompts for the Eagle backbones: chat template, image tokens, left padding. numpy only.

N1.5 (:class:`Gr00tPrompt`, below) and N1.6 (:class:`Gr00tN16Prompt`, at the end of this module).

GR00T's ``Eagle2_5_VLProcessor`` turns one instruction and one frame into (Qwen chat template,
default system prompt, the frame as ``<image-1>`` then replaced)::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n<image 1><img>
    {<IMG_CONTEXT> x N}</img>{instruction}<|im_end|>\\n<|im_start|>assistant\\n

(one line; N = 256 at 224 px), tokenised with the Qwen3 tokenizer and LEFT-padded with
``<|endoftext|>``. :class:`Gr00tPrompt` builds the same ids: the special tokens take the
tokenizer's own ids; the text between them is tokenised piece by piece, as the tokenizer itself
splits a text at its special tokens. Every prompt is padded to one fixed length ``max_len`` so
every engine sees one shape: ``max_len = template_len + instruction budget``, where
``template_len`` counts every token but the instruction's (26 + N with Qwen3's tokenizer).
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

SYSTEM_PROMPT = "You are a helpful assistant."
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
IMG_START, IMG_END, IMG_CONTEXT = "<img>", "</img>", "<IMG_CONTEXT>"
PAD = "<|endoftext|>"
IMAGE_LABEL = "<image 1>"          # GR00T's text for the first (only) frame, before <img>


def gr00t_prompt_text(instruction: str, image_tokens: int) -> str:
    """The prompt as text, image placeholders expanded (what GR00T's processor tokenises)."""
    return (f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n{IM_START}user\n{IMAGE_LABEL}{IMG_START}"
            f"{IMG_CONTEXT * image_tokens}{IMG_END}{instruction}{IM_END}\n{IM_START}assistant\n")


def _token_id(tokenizer, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    unk = getattr(tokenizer, "unk_token_id", None)
    if not isinstance(tid, int) or (tid == unk and token != getattr(tokenizer, "unk_token", None)):
        raise ValueError(f"the tokenizer has no {token} token: GR00T's prompt needs the Eagle 2.5 (Qwen3) "
                         f"tokenizer with <|im_start|>, <|im_end|>, <img>, </img>, <IMG_CONTEXT>, <|endoftext|>")
    return tid


class _LeftPaddedPrompt:
    """What both GR00T prompts share: the tokenizer's special-token ids, text tokenised piece by piece
    between them, and every prompt left-padded with ``<|endoftext|>`` to one fixed ``max_len``.

    A subclass builds its pieces in ``__init__``, defines :meth:`_row` (the ids of one prompt) and
    then calls :meth:`_finish`."""

    def __init__(self, tokenizer, max_len: int):
        self.tokenizer = tokenizer
        self.max_len = int(max_len)
        self.im_start_id, self.im_end_id = _token_id(tokenizer, IM_START), _token_id(tokenizer, IM_END)
        self.img_start_id, self.img_end_id = _token_id(tokenizer, IMG_START), _token_id(tokenizer, IMG_END)
        self.image_token_id = _token_id(tokenizer, IMG_CONTEXT)
        self.pad_id = _token_id(tokenizer, PAD)

    def _row(self, instruction: str) -> list[int]:
        raise NotImplementedError

    def _finish(self) -> None:
        self.template_len = len(self._row(""))   # every token of a prompt but the instruction's
        if self.max_len <= self.template_len:
            raise ValueError(f"max_len {self.max_len} leaves no room for the instruction: the template alone is "
                             f"{self.template_len} tokens ({self.image_tokens} of them image tokens)")

    @classmethod
    def with_text_budget(cls, tokenizer, image_tokens, max_text_len: int, **options):
        """A prompt padded to ``template_len + max_text_len`` (``PolicyConfig.max_text_len``)."""
        probe = cls(tokenizer, image_tokens, 1 << 30, **options)
        return cls(tokenizer, image_tokens, probe.template_len + int(max_text_len), **options)

    @property
    def text_budget(self) -> int:
        """The most instruction tokens a prompt can hold."""
        return self.max_len - self.template_len

    def _text(self, text: str) -> list[int]:
        return [int(t) for t in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids i64 [B, max_len], attention_mask i64 [B, max_len])``, left-padded; an
        instruction longer than :attr:`text_budget` tokens raises ``ValueError``."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of instructions, not one string")
        ids = np.full((len(texts), self.max_len), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), self.max_len), dtype=np.int64)
        for i, text in enumerate(texts):
            row = self._row(text)
            if len(row) > self.max_len:
                raise ValueError(f"instruction {i} ({text[:60]!r}) is {len(row) - self.template_len} tokens; with "
                                 f"the {self.template_len}-token template ({self.image_tokens} image tokens) the "
                                 f"prompt is {len(row)} tokens, more than max_len {self.max_len} (instruction "
                                 f"budget {self.text_budget}: raise max_text_len or shorten the instruction)")
            ids[i, self.max_len - len(row):] = row
            mask[i, self.max_len - len(row):] = 1
        return ids, mask


class Gr00tPrompt(_LeftPaddedPrompt):
    """Instructions -> ``(input_ids, attention_mask)``, int64 ``[B, max_len]``, GR00T's layout.

    ``tokenizer``: a transformers tokenizer (GR00T's ``eagle2_hg_model`` Qwen3 tokenizer);
    ``image_tokens``: ``<IMG_CONTEXT>`` tokens per frame; ``max_len``: the padded total length."""

    def __init__(self, tokenizer, image_tokens: int, max_len: int):
        if image_tokens < 1:
            raise ValueError(f"image_tokens must be >= 1, got {image_tokens}")
        super().__init__(tokenizer, max_len)
        self.image_tokens = int(image_tokens)
        self.prefix = ([self.im_start_id, *self._text(f"system\n{SYSTEM_PROMPT}"), self.im_end_id, *self._text("\n"),
                        self.im_start_id, *self._text(f"user\n{IMAGE_LABEL}"), self.img_start_id]
                       + [self.image_token_id] * self.image_tokens + [self.img_end_id])
        self.suffix = [self.im_end_id, *self._text("\n"), self.im_start_id, *self._text("assistant\n")]
        self._finish()

    def _row(self, instruction: str) -> list[int]:
        return self.prefix + self._text(instruction) + self.suffix

    def text(self, instruction: str) -> str:
        return gr00t_prompt_text(instruction, self.image_tokens)


# ---- GR00T N1.6 -------------------------------------------------------------------------------------------

def formalize_language(text: str) -> str:
    """GR00T N1.6's ``formalize_language``: lower case, every character that is neither a word
    character nor whitespace removed ("Pick up the RED cube!" -> "pick up the red cube")."""
    return re.sub(r"[^\w\s]", "", text.lower())


def _n16_views(image_tokens: int | Sequence[int]) -> tuple[int, ...]:
    views = (int(image_tokens),) if isinstance(image_tokens, (int, np.integer)) else tuple(int(n) for n in image_tokens)
    if not views or min(views) < 1:
        raise ValueError(f"every view needs >= 1 image token, got {list(views)}")
    return views


def n16_image_block(index: int, image_tokens: int) -> str:
    """View ``index`` (1-based) expanded: ``<image k><img>`` + n x ``<IMG_CONTEXT>`` + ``</img>``."""
    return f"<image {index}>{IMG_START}{IMG_CONTEXT * image_tokens}{IMG_END}"


def gr00t_n16_prompt_text(instruction: str, image_tokens: int | Sequence[int]) -> str:
    """GR00T N1.6's prompt as text (``instruction`` as given, not formalised), image placeholders
    expanded: the instruction BEFORE the views, no assistant turn."""
    images = "".join(n16_image_block(k, n) for k, n in enumerate(_n16_views(image_tokens), 1))
    return f"{IM_START}system\n{SYSTEM_PROMPT}{IM_END}\n{IM_START}user\n{instruction}{images}{IM_END}\n"


class Gr00tN16Prompt(_LeftPaddedPrompt):
    """Instructions -> ``(input_ids, attention_mask)``, int64 ``[B, max_len]``, GR00T N1.6's layout.

    GR00T N1.6's processor formalises the instruction (:func:`formalize_language`, when
    ``formalize_language`` is set, as in the release), puts it BEFORE the image(s) in the user turn
    and adds no assistant turn (Qwen chat template, default system prompt)::

        <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n{instruction}
        <image 1><img>{<IMG_CONTEXT> x N}</img><|im_end|>\\n

    (one line; ``<image k>`` is plain text, 5 tokens; N = H * W / 784 per view), tokenised with the
    Qwen3 tokenizer, LEFT-padded with ``<|endoftext|>``. Special tokens take the tokenizer's ids; the
    text between them is tokenised piece by piece, as the tokenizer splits a text at its special
    tokens -- ``user\\n{instruction}<image 1>`` is one piece, so the ids are exact even where the
    tokenizer merges across the instruction's ends. ``image_tokens``: tokens of each view (an int: one
    view); ``max_len``: the padded total length; ``template_len`` counts every token but the
    instruction's (23 + N with Qwen3's tokenizer)."""

    def __init__(self, tokenizer, image_tokens: int | Sequence[int], max_len: int, formalize: bool = True):
        super().__init__(tokenizer, max_len)
        self.view_tokens = _n16_views(image_tokens)
        self.image_tokens = sum(self.view_tokens)       # image tokens in one prompt, all views
        self.formalize = bool(formalize)
        self.prefix = [self.im_start_id, *self._text(f"system\n{SYSTEM_PROMPT}"), self.im_end_id, *self._text("\n"),
                       self.im_start_id]
        # the first view's <img> block; later views add their "<image k>" text before theirs
        self.images = [self.img_start_id, *[self.image_token_id] * self.view_tokens[0], self.img_end_id]
        for k, n in enumerate(self.view_tokens[1:], 2):
            self.images += [*self._text(f"<image {k}>"), self.img_start_id, *[self.image_token_id] * n,
                            self.img_end_id]
        self.suffix = [self.im_end_id, *self._text("\n")]
        self._finish()

    def _row(self, instruction: str) -> list[int]:
        language = self.language(instruction)
        return self.prefix + self._text(f"user\n{language}<image 1>") + self.images + self.suffix

    def language(self, instruction: str) -> str:
        """The instruction as it enters the prompt (formalised when ``formalize``)."""
        return formalize_language(instruction) if self.formalize else instruction

    def text(self, instruction: str) -> str:
        return gr00t_n16_prompt_text(self.language(instruction), self.view_tokens)
