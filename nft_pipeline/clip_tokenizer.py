"""CLIP's tokenizer, built offline from the bundled byte-pair file: the one tokenizer of the project.

`openai/clip-vit-base-patch32` (and every OpenAI CLIP) tokenizes with the transformers
`CLIPTokenizer` over OpenAI's vocabulary: the 256 byte symbols in GPT-2's byte-to-unicode order,
the same 256 with the end-of-word marker `</w>`, one token per merge of
`bpe_simple_vocab_16e6.txt.gz` in file order (the first 48,894), then `<|startoftext|>` (49406)
and `<|endoftext|>` (49407): 49,408 ids. That file is bundled (`nft_pipeline/data/`, MIT), so the
same tokenizer is built here without the hub, and it is the one every model of the pipeline
uses (the `tiny` and `vit-b-32` presets save it with `save_pretrained`), and the one the
captions stage counts with to make a caption fit the text encoder's 77 tokens: counting and
training cannot disagree.

Kept light: transformers is imported only when the tokenizer is first built (the captions stage
imports this module).
"""

from __future__ import annotations

import gzip
import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

CLIP_BPE_ENV = "NFT_PIPELINE_CLIP_BPE"
BUNDLED_CLIP_BPE = Path(__file__).parent / "data" / "bpe_simple_vocab_16e6.txt.gz"  # MIT, see data/README.md
CLIP_MERGES = 49152 - 256 - 2  # the merges CLIP uses from the file
CLIP_VOCAB_SIZE = 2 * 256 + CLIP_MERGES + 2  # 49,408
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
END_OF_WORD = "</w>"


def clip_bpe_path() -> Path | None:
    """CLIP's merges file: `$NFT_PIPELINE_CLIP_BPE` if set, else the bundled copy; None if absent."""
    configured = os.environ.get(CLIP_BPE_ENV)
    path = Path(configured) if configured else BUNDLED_CLIP_BPE
    return path if path.is_file() else None


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, in CLIP's vocabulary order.

    OpenAI's `bytes_to_unicode` lists the printable bytes (33-126, 161-172, 174-255) as themselves,
    then the other bytes as 256, 257, ...: ascending code points, which is `sorted` of the alphabet.
    """
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


@cache
def clip_tokenizer() -> CLIPTokenizer:
    """OpenAI CLIP's tokenizer (transformers `CLIPTokenizer`), built once per process."""
    from transformers import CLIPTokenizer

    path = clip_bpe_path()
    if path is None:
        raise FileNotFoundError(f"CLIP's BPE file is missing: {BUNDLED_CLIP_BPE} (or set ${CLIP_BPE_ENV})")
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")[1 : CLIP_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = [*byte_symbols(), *(symbol + END_OF_WORD for symbol in byte_symbols())]
    symbols += ["".join(pair) for pair in merges] + [START_OF_TEXT, END_OF_TEXT]
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"{path} gives {len(vocab)} distinct tokens, CLIP has {CLIP_VOCAB_SIZE}")
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
