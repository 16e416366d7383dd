"""Prompts from AUs, and a CLIP tokenizer built in memory from the project's own small vocabulary
(no hub download). For the ``sd15`` preset the model's own tokenizer is used instead."""

from __future__ import annotations

import math

import numpy as np

from paincontrol_lib.facs import pspi

# Phrases per AU, in the order they appear in a prompt.
AU_PHRASES = (
    ("AU04", "brows", "lowered"),
    ("AU43", "eyes", "closed"),
    ("AU07", "eyelids", "tightened"),
    ("AU06", "cheeks", "raised"),
    ("AU09", "nose", "wrinkled"),
    ("AU10", "upper lip", "raised"),
    ("AU12", "mouth", "smiling"),
    ("AU01", "inner brows", "raised"),
    ("AU02", "outer brows", "raised"),
    ("AU26", "jaw", "dropped"),
    ("AU25", "lips", "parted"),
)
BINARY_PHRASES = ("AU43", "AU25", "AU26", "AU12")
INTENSITY_WORDS = {1: "slightly", 2: "slightly", 3: "clearly", 4: "strongly", 5: "strongly"}


def pain_level(pspi_value: float) -> str:
    if pspi_value <= 0:
        return "no"
    if pspi_value <= 3:
        return "mild"
    if pspi_value <= 7:
        return "moderate"
    return "severe"


def prompt_from_aus(aus) -> str:
    """``{"AU04": 4, "AU43": 1, ...}`` -> "a face in severe pain, brows strongly lowered, ...".

    NaN or missing AUs count as absent.
    """
    clean = {k: float(v) for k, v in dict(aus).items() if v is not None and not _isnan(v)}
    level = pain_level(pspi(clean))
    head = "a neutral face" if level == "no" else f"a face in {level} pain"
    parts = [head]
    for au, subject, participle in AU_PHRASES:
        value = clean.get(au, 0.0)
        if value <= 0:
            continue
        if au in BINARY_PHRASES:
            parts.append(f"{subject} {participle}")
        else:
            word = INTENSITY_WORDS[int(min(5, max(1, round(value))))]
            parts.append(f"{subject} {word} {participle}")
    if level == "no" and len(parts) > 1:
        parts[0] = "a face"
    return ", ".join(parts)


def _isnan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def vocabulary_words() -> list[str]:
    words = {"a", "face", "in", "pain", "neutral", "no", "mild", "moderate", "severe", ","}
    for _, subject, participle in AU_PHRASES:
        words.update(subject.split() + [participle])
    words.update(INTENSITY_WORDS.values())
    return sorted(words)


def word_merges(words: list[str]) -> list[tuple[str, str]]:
    """BPE merges learned on ``words`` until each is one symbol: the most frequent adjacent pair
    first (ties alphabetical), each merge applied to every word before the next is chosen.
    The tokenizer applies merges by this rank, so it replays exactly these steps and every
    vocabulary word becomes one token. (Merges built word by word, each word's prefix chain on
    its own, do not: an earlier word's merge such as "l"+"i" pre-empts "sl"+"i" and "slightly"
    fell into 7 tokens.)"""
    from collections import Counter

    pieces = [[*w[:-1], w[-1] + "</w>"] for w in words]
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(pair for p in pieces for pair in zip(p, p[1:], strict=False))
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        pieces = [_merge(p, best) for p in pieces]


def _merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def build_tokenizer(model_max_length: int = 32):
    """A CLIPTokenizer over the prompt vocabulary: every character (so unknown words still
    tokenise) plus BPE merges (:func:`word_merges`) that make each vocabulary word one token."""
    from transformers import CLIPTokenizer

    alphabet = set("abcdefghijklmnopqrstuvwxyz0123456789")
    words = vocabulary_words()
    chars = sorted({c for w in words for c in w} | alphabet)
    vocab: dict[str, int] = {}

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    for special in ("<|startoftext|>", "<|endoftext|>"):
        add(special)
    for c in chars:
        add(c)
        add(c + "</w>")
    merges = word_merges(words)
    for left, right in merges:
        add(left + right)
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=model_max_length,
        pad_token="<|endoftext|>",
    )


def split_words(tokenizer) -> list[str]:
    """Vocabulary words ``tokenizer`` does not keep whole (empty for :func:`build_tokenizer`'s;
    checkpoints saved before the fix carry the old tokenizer, which splits some)."""
    return [w for w in vocabulary_words() if len(tokenizer.tokenize(w)) != 1]


def longest_prompt() -> str:
    """The prompt with the most words :func:`prompt_from_aus` can write (every AU present, in
    severe pain): with one token per word, a token budget that fits it fits every prompt."""
    return prompt_from_aus(dict.fromkeys((au for au, _, _ in AU_PHRASES), 5.0))


def text_conditioning(tokenizer, prompts: list[str]) -> dict:
    """How faithfully ``tokenizer`` carries ``prompts`` (and the longest possible prompt): the
    vocabulary words it splits and the prompts longer than its token budget, which the model
    sees cut off. Recorded with every trained model (``training.json``)."""
    limit = tokenizer.model_max_length
    lengths = [len(ids) for ids in tokenizer([*prompts, longest_prompt()]).input_ids]
    return {
        "words_split": split_words(tokenizer),
        "max_prompt_tokens": int(limit),
        "longest_prompt_tokens": int(max(lengths)),
        "n_prompts": len(prompts),
        "prompts_truncated": int(sum(n > limit for n in lengths[:-1])),
        "longest_possible_prompt_fits": bool(lengths[-1] <= limit),
    }


def aus_of(row, au_columns) -> dict[str, float]:
    return {au: float(row[au]) for au in au_columns if au in row and np.isfinite(row[au])}
