"""Image-text retrieval metrics: text-to-image and image-to-text recall at k, global and per collection.

Embeddings are L2-normalised, so a dot product is the cosine similarity. Pair i is text i and
image i; a query is correct at k when its own item ranks within the top k candidates.

Ranks are counted, never sorted: the rank of query i is the number of other candidates j != i
whose score is >= the score of its own item. Ties therefore count AGAINST the query (the
pessimistic convention): a model that maps everything to one point scores 0, not 1/N, and exact
duplicates (two identical images) cannot both be "found" by luck of index order. Counting goes
chunk by chunk (queries x candidates), so 100,000 x 100,000 never needs the full matrix: memory
is query_chunk x candidate_chunk scores at a time.

Per collection, the candidates are restricted to the query's own collection (the question is
then "does it find the right token among its siblings", the hard part of NFT retrieval).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import CLIPModel

from nft_pipeline.train.distributed import Runtime
from nft_pipeline.train.loss import clip_loss
from nft_pipeline.train.model import image_embeddings, text_embeddings

Metrics = dict[str, float]


def retrieval_ranks(
    queries: torch.Tensor, candidates: torch.Tensor, query_chunk: int, candidate_chunk: int
) -> torch.Tensor:
    """Rank (0 = first) of candidate i for query i, with ties counted against the query.

    `queries` and `candidates` are N x D and already normalised; scores use their dtype and device.
    """
    count = len(queries)
    if len(candidates) != count:
        raise ValueError("queries and candidates must pair up one to one")
    ranks = torch.zeros(count, dtype=torch.long, device=queries.device)
    for query_start in range(0, count, query_chunk):
        query_stop = min(query_start + query_chunk, count)
        block = queries[query_start:query_stop]
        own_scores = (block * candidates[query_start:query_stop]).sum(dim=1, keepdim=True)
        rows = torch.arange(query_start, query_stop, device=queries.device)
        for candidate_start in range(0, count, candidate_chunk):
            candidate_stop = min(candidate_start + candidate_chunk, count)
            at_least_as_good = block @ candidates[candidate_start:candidate_stop].T >= own_scores
            own_here = (rows >= candidate_start) & (rows < candidate_stop)
            # A query's own item is never counted against it, whatever rounding says of its score.
            at_least_as_good[own_here.nonzero().squeeze(1), rows[own_here] - candidate_start] = False
            ranks[query_start:query_stop] += at_least_as_good.sum(dim=1)
    return ranks


def recall_at(ranks: torch.Tensor, top_k: Sequence[int]) -> Metrics:
    return {f"R@{k}": float((ranks < k).float().mean().item()) for k in top_k}


def _both_directions(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, top_k: Sequence[int], query_chunk: int, candidate_chunk: int
) -> dict[str, object]:
    return {
        "count": len(image_embeds),
        "text_to_image": recall_at(retrieval_ranks(text_embeds, image_embeds, query_chunk, candidate_chunk), top_k),
        "image_to_text": recall_at(retrieval_ranks(image_embeds, text_embeds, query_chunk, candidate_chunk), top_k),
    }


def retrieval_metrics(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    collections: Sequence[str],
    top_k: Sequence[int] = (1, 5, 10),
    query_chunk: int = 1024,
    candidate_chunk: int = 8192,
) -> dict[str, object]:
    """Recall at k both ways, over all pairs and within each collection.

    Returns {"global": {...}, "per_collection": {name: {...}}}, each with "count",
    "text_to_image" and "image_to_text" ({"R@1": ..., "R@5": ..., ...}).
    """
    if not len(image_embeds) == len(text_embeds) == len(collections):
        raise ValueError("need one image, one text and one collection per pair")
    if len(collections) == 0:
        return {"global": {"count": 0}, "per_collection": {}}
    images = F.normalize(image_embeds, dim=-1)
    texts = F.normalize(text_embeds, dim=-1)
    members: dict[str, list[int]] = {}
    for position, collection in enumerate(collections):
        members.setdefault(collection, []).append(position)
    per_collection = {}
    for collection in sorted(members):
        rows = torch.tensor(members[collection], device=images.device)
        per_collection[collection] = _both_directions(images[rows], texts[rows], top_k, query_chunk, candidate_chunk)
    return {
        "global": _both_directions(images, texts, top_k, query_chunk, candidate_chunk),
        "per_collection": per_collection,
    }


@torch.inference_mode()
def embed_pairs(model: CLIPModel, loader: DataLoader, runtime: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float32 image and text embeddings of every pair the loader yields, in its order."""
    was_training = model.training
    model.eval()
    images, texts = [], []
    for batch in loader:
        with runtime.autocast():
            images.append(image_embeddings(model, runtime.to_device(batch["pixel_values"])).float())
            texts.append(
                text_embeddings(
                    model, runtime.to_device(batch["input_ids"]), runtime.to_device(batch["attention_mask"])
                ).float()
            )
    model.train(was_training)
    if not images:
        empty = torch.empty(0, model.config.projection_dim, device=runtime.device)
        return empty, empty
    return F.normalize(torch.cat(images), dim=-1), F.normalize(torch.cat(texts), dim=-1)


def chunked_clip_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor, batch_size: int
) -> float | None:
    """The training loss on held-out pairs, over consecutive batches of the training batch size.

    The contrastive loss depends on how many negatives a batch holds, so validation uses the same
    batch size as training to stay comparable with the training loss. None when no batch has two
    pairs (a lone pair has no negative to tell it from).
    """
    losses, weights = [], []
    for start in range(0, len(image_embeds), batch_size):
        stop = min(start + batch_size, len(image_embeds))
        if stop - start < 2:
            continue
        losses.append(float(clip_loss(image_embeds[start:stop], text_embeds[start:stop], logit_scale)))
        weights.append(stop - start)
    return sum(loss * weight for loss, weight in zip(losses, weights)) / sum(weights) if weights else None
