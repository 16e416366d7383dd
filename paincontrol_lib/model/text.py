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


def build_tokenizer(model_max_length: int = 32):
    """A CLIPTokenizer over the prompt vocabulary: every character (so unknown words still
    tokenise) plus BPE merges that assemble each known word into one token."""
    from transformers import CLIPTokenizer

    alphabet = set("abcdefghijklmnopqrstuvwxyz0123456789")
    chars = sorted({c for w in vocabulary_words() for c in w} | alphabet)
    vocab: dict[str, int] = {}

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    for special in ("<|startoftext|>", "<|endoftext|>"):
        add(special)
    for c in chars:
        add(c)
        add(c + "</w>")
    merges: list[tuple[str, str]] = []
    for word in vocabulary_words():
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        current = symbols[0]
        for nxt in symbols[1:]:
            merge = (current, nxt)
            if merge not in merges:
                merges.append(merge)
            current = current + nxt
            add(current)
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=model_max_length,
        pad_token="<|endoftext|>",
    )


def aus_of(row, au_columns) -> dict[str, float]:
    return {au: float(row[au]) for au in au_columns if au in row and np.isfinite(row[au])}
