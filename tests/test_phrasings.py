"""Caption phrasings for training: the same tags said in varied ways, drawn reproducibly per (token, epoch)."""

from __future__ import annotations

import re

from nft_pipeline.captions import caption_token
from nft_pipeline.phrasings import phrase_caption, phrasing_rng
from nft_pipeline.query import QueryParser, TraitVocabulary, words
from nft_pipeline.samples.nouns import Nouns
from nft_pipeline.samples.punks import CryptoPunks


def captions(collection, token_ids):
    return [
        caption_token(collection.name, collection.metadata(t)["name"], str(t), collection.metadata(t)["attributes"], None)
        for t in token_ids
    ]


def test_phrasings_vary_are_reproducible_and_still_name_every_tag():
    punks = captions(CryptoPunks(), range(60))
    nouns = captions(Nouns(), range(20))
    everything = punks + nouns
    vocabulary = TraitVocabulary.from_rows(
        ["cryptopunks"] * len(punks) + ["nouns"] * len(nouns),
        [caption.tags for caption in everything],
        [caption.title for caption in everything],
    )
    parser = QueryParser(vocabulary)
    for index, caption in enumerate(everything):
        said = [phrase_caption(caption, phrasing_rng(7, epoch, index)) for epoch in range(8)]
        assert said == [phrase_caption(caption, phrasing_rng(7, epoch, index)) for epoch in range(8)]
        assert len(set(said)) >= 4, said  # several ways, not one template
        for text in said:
            # The parser (query.py) reads every tag back from each phrasing: nothing was lost.
            understood = {vocabulary.traits[t] for chip in parser.parse(text).chips for t in chip.traits}
            named = {(ref.trait_type, ref.value) for ref in understood}
            for tag in caption.tags:
                assert (tag["trait_type"], tag["value"]) in named or words(tag["value"])[-1].isdigit(), (text, tag)


def test_a_hidden_tag_is_left_out_of_the_phrasing():
    caption = captions(CryptoPunks(), [0])[0]  # Female 2, Blonde Bob, Green Eye Shadow, Earring
    for epoch in range(10):
        text = phrase_caption(caption, phrasing_rng(1, epoch, 0), hidden={1}).lower()
        assert "bob" not in text and "earring" in text and "eye shadow" in text


def test_no_phrasing_doubles_an_article():
    """A connector ending in an article (" with a ") before a phrase with its own ("a Warm Background")."""
    everything = captions(Nouns(), range(40)) + captions(CryptoPunks(), range(40))
    for index, caption in enumerate(everything):
        for epoch in range(30):
            text = phrase_caption(caption, phrasing_rng(3, epoch, index)).lower()
            assert not re.search(r"\ban? an?\b", text), text
