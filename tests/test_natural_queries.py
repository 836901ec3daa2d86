"""The natural-query generator and precision@10 that `bench_search_quality.py` and `experiment_masking.py` share."""

from __future__ import annotations

import random

from benchmarks.natural_queries import Token, chance_precision, generated_queries, hand_queries, precision_at, relevant
from nft_pipeline.samples.nouns import Nouns
from nft_pipeline.samples.punks import CryptoPunks


def sample_tokens(count: int) -> list[Token]:
    tokens = []
    for collection in (CryptoPunks(), Nouns()):
        for token_id in range(count):
            attributes = collection.metadata(token_id)["attributes"]
            traits = frozenset((a.get("trait_type") or "", str(a["value"])) for a in attributes)
            tokens.append(Token(collection.slug, str(token_id), traits))
    return tokens


def test_every_generated_query_is_answered_by_some_token_and_never_across_collections():
    tokens = sample_tokens(60)
    queries = generated_queries(tokens, 120, seed=3)
    assert len(queries) == 120 and {q.collection for q in queries} == {"cryptopunks", "nouns"}
    for query in queries:
        answers = [token for token in tokens if relevant(token, query)]
        assert answers and all(token.collection == query.collection for token in answers), query
    assert [q.text for q in generated_queries(tokens, 120, seed=3)] == [q.text for q in queries]  # seeded
    assert {q.collection for q in hand_queries(tokens)} == {"cryptopunks", "nouns"}
    assert hand_queries(tokens[:60]) and {q.collection for q in hand_queries(tokens[:60])} == {"cryptopunks"}


def test_precision_at_10_is_one_for_the_best_ranking_and_zero_for_the_worst():
    tokens = sample_tokens(60)
    query = next(q for q in generated_queries(tokens, 50, seed=1) if 3 <= sum(relevant(t, q) for t in tokens) < 10)
    count = sum(relevant(t, query) for t in tokens)
    best = sorted(tokens, key=lambda t: not relevant(t, query))
    assert precision_at(best, query, count) == 1.0 and precision_at(best[::-1], query, count) == 0.0
    shuffled = [random.Random(seed).sample(tokens, len(tokens)) for seed in range(400)]
    mean = sum(precision_at(order, query, count) for order in shuffled) / len(shuffled)
    assert abs(mean - chance_precision(count, len(tokens))) < 0.03
