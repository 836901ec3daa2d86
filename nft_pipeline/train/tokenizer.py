"""A CLIP tokenizer trained on the run's own captions, for the offline `tiny` preset.

The real CLIP vocabulary lives on the hub and cannot be fetched here, so the tiny preset learns
its byte-pair merges from the training captions with the same text pipeline as CLIP (NFC,
whitespace folding, lower-casing, CLIP's word regex, byte-level symbols, `</w>` word ends).
The vocabulary is then laid out the way CLIP's is: all 256 byte symbols, the same 256 with the
end-of-word marker, one token per merge in merge order, then the start and end markers. Because
every byte is in the vocabulary in both forms, no text can fall back to the unknown token (which
CLIP maps to the end marker, and the text model pools at the first end marker: an unknown
character would silently cut the caption short). The result is a plain `CLIPTokenizer`, saved
and loaded with `save_pretrained` / `from_pretrained` like any hub tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tokenizers import pre_tokenizers
from tokenizers.trainers import BpeTrainer
from transformers import CLIPTokenizer

START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
END_OF_WORD = "</w>"
_BYTE_SYMBOLS = tuple(sorted(pre_tokenizers.ByteLevel.alphabet()))
BASE_VOCAB_SIZE = 2 * len(_BYTE_SYMBOLS) + 2  # bytes, bytes + </w>, start, end


def train_clip_tokenizer(texts: Iterable[str], vocab_size: int) -> CLIPTokenizer:
    """Learn up to `vocab_size - BASE_VOCAB_SIZE` merges from `texts`; deterministic for equal input."""
    if vocab_size < BASE_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be at least {BASE_VOCAB_SIZE} (CLIP's byte symbols and markers)")
    backend = CLIPTokenizer()._tokenizer
    trainer = BpeTrainer(
        vocab_size=vocab_size + len(_BYTE_SYMBOLS),  # generous: its count of word-final symbols differs from ours
        min_frequency=2,
        special_tokens=[],
        initial_alphabet=list(_BYTE_SYMBOLS),
        end_of_word_suffix=END_OF_WORD,
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    merges = [tuple(pair) for pair in json.loads(backend.to_str())["model"]["merges"]]
    return clip_tokenizer_from_merges(merges[: vocab_size - BASE_VOCAB_SIZE])


def clip_tokenizer_from_merges(merges: list[tuple[str, str]]) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is laid out like CLIP's own, from a list of merges."""
    symbols = [*_BYTE_SYMBOLS, *(symbol + END_OF_WORD for symbol in _BYTE_SYMBOLS)]
    symbols += [left + right for left, right in merges]
    symbols += [START_OF_TEXT, END_OF_TEXT]
    vocab = {symbol: index for index, symbol in enumerate(dict.fromkeys(symbols))}
    return CLIPTokenizer(vocab=vocab, merges=list(merges))
