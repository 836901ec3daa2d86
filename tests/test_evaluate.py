"""Retrieval metrics against a brute-force computation over the full similarity matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nft_pipeline.train.evaluate import recall_at, retrieval_metrics, retrieval_ranks

TOP_K = (1, 5, 10)


def brute_force_ranks(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Rank of item i for query i over the full matrix: other candidates scoring >= it (ties count against)."""
    scores = queries @ candidates.T
    own = np.diag(scores)[:, None]
    at_least_as_good = scores >= own
    np.fill_diagonal(at_least_as_good, False)
    return at_least_as_good.sum(axis=1)


def brute_force_recall(ranks: np.ndarray) -> dict[str, float]:
    return {f"R@{k}": float((ranks < k).mean()) for k in TOP_K}


def unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    rows = rng.normal(size=(count, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture()
def paired_embeddings() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Texts near their images (so recall is neither 0 nor 1), in three collections of unequal size."""
    rng = np.random.default_rng(7)
    images = unit_rows(rng, 41, 6)
    texts = images + rng.normal(scale=0.6, size=images.shape)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    collections = [("alpha", "beta", "gamma")[i % 3] if i < 30 else "alpha" for i in range(41)]
    return images, texts, collections


@pytest.mark.parametrize(("query_chunk", "candidate_chunk"), [(1, 1), (5, 7), (41, 41), (1000, 3)])
def test_ranks_equal_brute_force_for_any_chunking(paired_embeddings, query_chunk, candidate_chunk):
    images, texts, _ = paired_embeddings
    ranks = retrieval_ranks(torch.from_numpy(texts), torch.from_numpy(images), query_chunk, candidate_chunk)
    assert ranks.tolist() == brute_force_ranks(texts, images).tolist()


def test_metrics_equal_brute_force_globally_and_per_collection(paired_embeddings):
    images, texts, collections = paired_embeddings
    # Un-normalised inputs: the metric must normalise them itself.
    metrics = retrieval_metrics(
        torch.from_numpy(images * 3.0),
        torch.from_numpy(texts * 0.5),
        collections,
        TOP_K,
        query_chunk=4,
        candidate_chunk=6,
    )
    t2i = brute_force_recall(brute_force_ranks(texts, images))
    i2t = brute_force_recall(brute_force_ranks(images, texts))
    assert metrics["global"]["count"] == 41
    assert metrics["global"]["text_to_image"] == pytest.approx(t2i)
    assert metrics["global"]["image_to_text"] == pytest.approx(i2t)
    assert 0.0 < t2i["R@1"] < 1.0  # the case discriminates: not every query right or wrong
    for name in ("alpha", "beta", "gamma"):
        rows = [i for i, collection in enumerate(collections) if collection == name]
        restricted = metrics["per_collection"][name]
        assert restricted["count"] == len(rows)
        assert restricted["text_to_image"] == pytest.approx(
            brute_force_recall(brute_force_ranks(texts[rows], images[rows]))
        )
        assert restricted["image_to_text"] == pytest.approx(
            brute_force_recall(brute_force_ranks(images[rows], texts[rows]))
        )
    # Restricting candidates to the collection can only help: fewer competitors.
    alpha_rows = [i for i, collection in enumerate(collections) if collection == "alpha"]
    global_ranks = brute_force_ranks(texts, images)[alpha_rows]
    alpha_ranks = brute_force_ranks(texts[alpha_rows], images[alpha_rows])
    assert (alpha_ranks <= global_ranks).all() and (alpha_ranks < global_ranks).any()


def test_ties_count_against_the_query():
    # Exact values (0, +-1) so every score is exact whatever the summation order.
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ranks = retrieval_ranks(texts, images, query_chunk=2, candidate_chunk=2)
    assert ranks.tolist() == [1, 1, 0]  # the two duplicates tie with each other and both lose a place
    assert recall_at(ranks, (1, 2)) == {"R@1": pytest.approx(1 / 3), "R@2": 1.0}


def test_collapsed_embeddings_score_zero_not_one_over_n():
    same = torch.ones(6, 4)
    metrics = retrieval_metrics(same, same, ["c"] * 6, (1, 5, 6))
    assert metrics["global"]["text_to_image"] == {"R@1": 0.0, "R@5": 0.0, "R@6": 1.0}


def test_perfect_embeddings_score_one():
    identity = torch.eye(12)
    metrics = retrieval_metrics(identity, identity, ["a"] * 6 + ["b"] * 6, TOP_K, query_chunk=5, candidate_chunk=5)
    assert metrics["global"]["image_to_text"] == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0}
    assert metrics["per_collection"]["b"]["text_to_image"]["R@1"] == 1.0


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError):
        retrieval_metrics(torch.eye(3), torch.eye(3), ["a", "b"])
