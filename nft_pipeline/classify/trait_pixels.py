"""kNN features for pixel art: the pixels whose colour a trait type predicts, one-hot exact colours.

`pixel_weights` finds the pixels that knowing the value makes predictable; `trait_pixel_features`
turns each token into a sparse vector whose dot product with another's is the weighted count of
the pixels they share, each colour weighted by how well it names the value.
"""

from __future__ import annotations

import numpy as np


def _max_count_per_group(keys: np.ndarray, k: int, groups: int) -> np.ndarray:
    """For keys = group * k + member: per group, how often its most frequent member occurs (sparse:
    a photographic collection has too many colours for a dense pixel x colour table)."""
    uniq, counts = np.unique(keys, return_counts=True)
    group = uniq // k
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])  # sorted keys: each group's run
    out = np.zeros(groups)
    out[group[starts]] = np.maximum.reduceat(counts, starts)
    return out


def pixel_weights(codes: np.ndarray, labels: np.ndarray, max_tokens: int = 2000, seed: int = 0) -> np.ndarray:
    """Per pixel, how much knowing the trait value makes its colour predictable (>= 0).

    `codes`: N x P colour ids of labelled tokens, `labels`: their value indices. The weight is the
    purity of the pixel's colour within each value (the share of its most common colour, averaged
    over tokens) minus its purity without the value: a Noun's corners for `background`, the head's
    pixels for `head`, the skin for a punk's `Type`. Counted on at most `max_tokens` tokens.
    """
    if len(codes) > max_tokens:
        pick = np.random.default_rng(seed).choice(len(codes), max_tokens, replace=False)
        codes, labels = codes[pick], labels[pick]
    n, p = codes.shape
    colour = codes.astype(np.int64)  # packed RGBA: keys below stay under 2**63 (pixels x values < 2**31)
    k = 1 << 32
    pixel = np.broadcast_to(np.arange(p), (n, p))
    overall = _max_count_per_group((pixel * k + colour).ravel(), k, p) / n
    _, value = np.unique(labels, return_inverse=True)
    v = int(value.max()) + 1
    keys = ((pixel * v + value[:, None]) * k + colour).ravel()
    per_value = _max_count_per_group(keys, k, p * v)  # per (pixel, value): its most common colour's count
    within = per_value.reshape(p, v).sum(1) / n
    return np.clip(within - overall, 0.0, None)


def trait_pixel_features(
    codes: np.ndarray, labels: np.ndarray, train: np.ndarray, weights: np.ndarray, n_pixels: int = 256, n_colours: int = 256
):
    """Sparse N x F features whose dot product is a weighted count of the pixels two tokens share.

    The `n_pixels` pixels with the largest `weights` (`pixel_weights`) are kept, and at each its
    `n_colours` most common colours among the `train` rows. A shared colour counts by how well it
    names the value: its purity (the share of the train tokens showing it there that have its most
    common value, one token discounted: a colour on one token proves nothing) minus the purity of
    the value alone. So a Noun's accessory paint counts and the body colour seen through it does
    not. Exact colour matches suit pixel art, where a trait's pixels are identical wherever it
    appears. Only colours with a positive weight get a column, and each token has at most one
    non-zero per pixel, so the matrix is sparse (a CSR matrix; 10,000 punks x 256 pixels).
    """
    from scipy import sparse

    top = np.argsort(-weights)[:n_pixels]
    y = labels[train]
    n_values = int(y.max()) + 1
    base = np.bincount(y).max() / len(y)
    rows, cols, data = [], [], []
    n_columns = 0
    for pixel in top:
        colour_ids, colour = np.unique(codes[train, pixel], return_inverse=True)
        pairs, pair_counts = np.unique(colour * n_values + y, return_counts=True)
        totals = np.bincount(colour)
        best = np.zeros(len(colour_ids))
        np.maximum.at(best, pairs // n_values, pair_counts)
        purity = np.clip((best - 1) / totals - base, 0.0, None)
        keep = np.argsort(-totals)[:n_colours]
        keep = keep[purity[keep] > 0]
        if not len(keep):
            continue
        kept = colour_ids[keep]
        order = np.argsort(kept)
        kept, scale = kept[order], np.sqrt(purity[keep][order])
        position = np.searchsorted(kept, codes[:, pixel])
        position = np.minimum(position, len(kept) - 1)
        hit = np.flatnonzero(kept[position] == codes[:, pixel])
        rows.append(hit)
        cols.append(n_columns + position[hit])
        data.append(scale[position[hit]])
        n_columns += len(kept)
    if not rows:
        return sparse.csr_matrix((len(codes), 1), dtype=np.float32)
    return sparse.csr_matrix(
        (np.concatenate(data).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=(len(codes), max(n_columns, 1))
    )
