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

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

from tokenizers import pre_tokenizers
from transformers import CLIPTokenizer

START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
END_OF_WORD = "</w>"
_BYTE_SYMBOLS = tuple(sorted(pre_tokenizers.ByteLevel.alphabet()))
BASE_VOCAB_SIZE = 2 * len(_BYTE_SYMBOLS) + 2  # bytes, bytes + </w>, start, end


def train_clip_tokenizer(texts: Iterable[str], vocab_size: int) -> CLIPTokenizer:
    """Learn up to `vocab_size - BASE_VOCAB_SIZE` merges from `texts`; equal input, equal tokenizer."""
    if vocab_size < BASE_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be at least {BASE_VOCAB_SIZE} (CLIP's byte symbols and markers)")
    return clip_tokenizer_from_merges(learn_merges(word_counts(texts), vocab_size - BASE_VOCAB_SIZE))


def word_counts(texts: Iterable[str]) -> Counter[tuple[str, ...]]:
    """Each word of `texts` as CLIP splits it (byte-level symbols, `</w>` on the last), with its count."""
    backend = CLIPTokenizer()._tokenizer
    counts: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text)):
            counts[(*word[:-1], word[-1] + END_OF_WORD)] += 1
    return counts


def learn_merges(
    counts: Mapping[tuple[str, ...], int], max_merges: int, min_frequency: int = 2
) -> list[tuple[str, str]]:
    """Byte-pair merges, most frequent pair first; ties go to the smaller pair.

    Written here rather than taken from `tokenizers`' BpeTrainer because that trainer breaks ties
    by symbol ids it assigns in hash-map order, so equal captions could give different vocabularies
    from one call to the next (and so different models from the same seed). A heap with stale
    entries skipped keeps each merge proportional to the words that contain the pair.
    """
    words = [list(word) for word in counts]
    frequency = list(counts.values())
    pair_counts: Counter[tuple[str, str]] = Counter()
    holders: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for index, symbols in enumerate(words):
        for pair in zip(symbols, symbols[1:]):
            pair_counts[pair] += frequency[index]
            holders[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < max_merges:
        negative_count, pair = heapq.heappop(heap)
        if -negative_count != pair_counts.get(pair, 0):
            continue  # stale: the count changed since this entry was pushed
        if -negative_count < min_frequency:
            break
        merges.append(pair)
        changed: set[tuple[str, str]] = set()
        for index in sorted(holders.pop(pair)):
            symbols = words[index]
            for old in zip(symbols, symbols[1:]):
                pair_counts[old] -= frequency[index]
                changed.add(old)
            merged = _merge_pair(symbols, pair)
            for new in zip(merged, merged[1:]):
                pair_counts[new] += frequency[index]
                holders[new].add(index)
                changed.add(new)
            words[index] = merged
        for changed_pair in changed - {pair}:
            if pair_counts[changed_pair] > 0:
                heapq.heappush(heap, (-pair_counts[changed_pair], changed_pair))
        pair_counts.pop(pair, None)
    return merges


def _merge_pair(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    """`symbols` with every non-overlapping occurrence of `pair`, left to right, joined into one."""
    merged: list[str] = []
    index = 0
    while index < len(symbols):
        if index + 1 < len(symbols) and (symbols[index], symbols[index + 1]) == pair:
            merged.append(symbols[index] + symbols[index + 1])
            index += 2
        else:
            merged.append(symbols[index])
            index += 1
    return merged


def clip_tokenizer_from_merges(merges: list[tuple[str, str]]) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is laid out like CLIP's own, from a list of merges."""
    symbols = [*_BYTE_SYMBOLS, *(symbol + END_OF_WORD for symbol in _BYTE_SYMBOLS)]
    symbols += [left + right for left, right in merges]
    symbols += [START_OF_TEXT, END_OF_TEXT]
    vocab = {symbol: index for index, symbol in enumerate(dict.fromkeys(symbols))}
    return CLIPTokenizer(vocab=vocab, merges=list(merges))
