"""Value templates: what each trait value paints, learnt from the tokens that declare it.

A layered collection (CryptoPunks, Nouns, most generative PFPs) draws each trait value with the
same colours at the same pixels on every token that has it. The template of a value is, per
pixel, the colour most of its tokens show there and how consistently they show it; a token is
scored by how much of each template its image shows. Unlike kNN, which needs a neighbour that
shares the token's other traits too, a template generalises from one or two examples, and a body
half hidden under an accessory still shows the part of its template that is visible.

Two rules keep a template to its own trait:

- *Explained pixels are left out.* On a labelled token, a pixel whose colour another of its
  declared traits already paints there (that value's own template, learnt from at least
  `min_explaining_tokens` tokens) says nothing about this trait: a Noun's head pixels do not enter
  its accessory's template, even when the accessory is seen on one Noun only.
- *Common colours count little.* A template pixel weighs its consistency times how rarely tokens
  without the value show that colour there: the background behind a punk is no evidence of its Type.

The score of a value is the weighted share of its template the token shows, shrunk towards zero
for small templates (`shrinkage`, in pixels) so that a template of two pixels matched by chance
does not win. Scores become probabilities by a softmax at a temperature fitted on the labelled
tokens (leave-one-out is not needed: the score of a token against a template learnt partly from
itself is what a new token of a well-sampled value sees, and the temperature is fitted by NLL).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nft_pipeline.classify.trait_methods import TEMPERATURES, nll, softmax

PIXEL_SHIFT = np.int64(1) << np.int64(32)  # key = pixel * 2**32 + packed RGBA colour
OWN_PIXEL_WEIGHT = 0.9
MIN_EXPLAINING_TOKENS = 3  # a value explains pixels away once its template is learnt from this many tokens


@dataclass(frozen=True)
class ModeColours:
    """Per value and pixel: the most common colour among the value's tokens and its share."""

    colour: np.ndarray  # V x P uint32 packed RGBA
    share: np.ndarray  # V x P float: tokens showing that colour there / the value's tokens
    n_tokens: np.ndarray  # V


def mode_colours(codes: np.ndarray, labels: np.ndarray, n_values: int, counted: np.ndarray | None = None) -> ModeColours:
    """`codes`: N x P packed colours, `labels`: N value indices (>= 0); `counted`: N x P bool,
    the pixels that may vote (None: all). Values without tokens get share 0."""
    n, p = codes.shape
    pixel = np.broadcast_to(np.arange(p, dtype=np.int64), (n, p))
    keys = (labels[:, None].astype(np.int64) * p + pixel) * PIXEL_SHIFT + codes.astype(np.int64)
    keys = keys[counted] if counted is not None else keys.reshape(-1)
    uniq, counts = np.unique(keys, return_counts=True)
    group = uniq // PIXEL_SHIFT  # value * P + pixel, sorted
    colour = np.zeros(n_values * p, dtype=np.uint32)
    best = np.zeros(n_values * p, dtype=np.int64)
    if len(uniq):
        order = np.lexsort((-counts, group))  # by group, the most common colour first
        first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
        colour[group[first]] = (uniq[first] % PIXEL_SHIFT).astype(np.uint32)
        best[group[first]] = counts[first]
    n_tokens = np.bincount(labels, minlength=n_values)
    share = best.reshape(n_values, p) / np.maximum(n_tokens, 1)[:, None]
    return ModeColours(colour.reshape(n_values, p), share, n_tokens)


@dataclass(frozen=True)
class ValueTemplates:
    """Sparse templates of one trait type's values: (pixel, colour) keys with weights per value."""

    keys: np.ndarray  # K sorted int64 pixel * 2**32 + colour
    matrix: object  # scipy CSR, K x V weights
    totals: np.ndarray  # V: each template's total weight
    shrinkage: float
    log_prior: np.ndarray  # V: log of the values' smoothed shares among the labelled tokens
    temperature: float = 0.05

    def scores(self, codes: np.ndarray) -> np.ndarray:
        """N x V: the weighted share of each template that each token (N x P packed colours) shows."""
        from scipy import sparse

        n, p = codes.shape
        if not len(self.keys):  # no value paints any pixel consistently (noise, photographs)
            return np.zeros((n, len(self.totals)))
        pixels = np.unique(self.keys // PIXEL_SHIFT)
        query = pixels.astype(np.int64)[None, :] * PIXEL_SHIFT + codes[:, pixels].astype(np.int64)
        position = np.minimum(np.searchsorted(self.keys, query), len(self.keys) - 1)
        hit = self.keys[position] == query
        rows = np.broadcast_to(np.arange(n)[:, None], hit.shape)[hit]
        shown = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, position[hit])), shape=(n, len(self.keys)))
        return np.asarray((shown @ self.matrix).todense()) / (self.totals + self.shrinkage)[None, :]

    def predict(self, codes: np.ndarray) -> np.ndarray:
        """softmax(score / temperature + log prior): with no template shown (a photograph, or a
        value that paints nothing, like `none`) the values' frequencies decide, not their order."""
        return softmax(self.scores(codes) / self.temperature + self.log_prior[None, :])


@dataclass(frozen=True)
class TemplatePixels:
    """The (value, pixel, colour) entries of a trait type's templates with their weights."""

    value: np.ndarray
    pixel: np.ndarray
    colour: np.ndarray
    weight: np.ndarray

    @property
    def keys(self) -> np.ndarray:
        return self.pixel.astype(np.int64) * PIXEL_SHIFT + self.colour.astype(np.int64)


def template_pixels(codes: np.ndarray, labels: np.ndarray, n_values: int, counted: np.ndarray | None = None, min_share: float = 0.5) -> TemplatePixels:
    """Per value, the pixels that most of its tokens paint one colour (share >= `min_share`),
    weighted by that share times the colour's rarity there among tokens of other values."""
    n, p = codes.shape
    modes = mode_colours(codes, labels, n_values, counted)
    value, pixel = np.nonzero(modes.share >= min_share)
    colour = modes.colour[value, pixel]
    keys = pixel.astype(np.int64) * PIXEL_SHIFT + colour.astype(np.int64)
    everyone, everyone_counts = np.unique(np.arange(p, dtype=np.int64)[None, :] * PIXEL_SHIFT + codes.astype(np.int64), return_counts=True)
    shown_by_all = everyone_counts[np.minimum(np.searchsorted(everyone, keys), len(everyone) - 1)]
    own = np.round(modes.share[value, pixel] * modes.n_tokens[value])
    others = np.maximum(n - modes.n_tokens[value], 1)
    rarity = np.clip(1 - (shown_by_all - own) / others, 0, 1)
    weight = (modes.share[value, pixel] * rarity).astype(np.float32)
    keep = (weight > 0) & (modes.n_tokens[value] > 0)
    return TemplatePixels(value[keep], pixel[keep], colour[keep], weight[keep])


def reliable_painting(codes: np.ndarray, labels: np.ndarray, min_tokens: int, min_weight: float) -> np.ndarray:
    """N x P bool: where each labelled token shows its value's template colour, counting only
    template pixels of weight >= `min_weight` learnt from >= `min_tokens` tokens (unlabelled rows: False)."""
    n, p = codes.shape
    out = np.zeros((n, p), dtype=bool)
    has = np.flatnonzero(labels >= 0)
    if not len(has):
        return out
    n_values = int(labels.max()) + 1
    entries = template_pixels(codes[has], labels[has], n_values)
    reliable = (entries.weight >= min_weight) & (np.bincount(labels[has], minlength=n_values)[entries.value] >= min_tokens)
    painted = np.zeros((n_values, p), dtype=np.uint32)
    is_painted = np.zeros((n_values, p), dtype=bool)
    painted[entries.value[reliable], entries.pixel[reliable]] = entries.colour[reliable]
    is_painted[entries.value[reliable], entries.pixel[reliable]] = True
    value = labels[has]
    out[has] = is_painted[value] & (painted[value] == codes[has])
    return out


def fit_templates(
    codes: np.ndarray, labels: np.ndarray, n_values: int, explained: np.ndarray | None = None,
    min_share: float = 0.5, min_explaining_tokens: int = MIN_EXPLAINING_TOKENS, shrinkage: float = 2.0,
) -> ValueTemplates:
    """Templates of a trait type's values from labelled tokens (`codes` N x P, `labels` N >= 0).

    `explained`: N x P bool, the pixels the tokens' other declared traits paint (`reliable_painting`
    of each other exclusive type, or-ed); they are left out of the templates, except where the
    token's own value paints them as surely (weight >= `OWN_PIXEL_WEIGHT`): a Noun's background is
    not explained away by the heads that leave it uncovered."""
    from scipy import sparse

    counted = None
    if explained is not None:
        counted = ~explained | reliable_painting(codes, labels, min_explaining_tokens, OWN_PIXEL_WEIGHT)
    entries = template_pixels(codes, labels, n_values, counted, min_share)
    uniq, column = np.unique(entries.keys, return_inverse=True)
    matrix = sparse.csr_matrix((entries.weight, (column, entries.value)), shape=(len(uniq), n_values))
    totals = np.asarray(matrix.sum(0)).ravel()
    log_prior = np.log((np.bincount(labels, minlength=n_values) + 1) / (len(labels) + n_values))
    templates = ValueTemplates(uniq, matrix, totals, shrinkage, log_prior)
    scores = templates.scores(codes)
    best = min(TEMPERATURES, key=lambda t: nll(softmax(scores / t + log_prior[None, :]), labels))
    return ValueTemplates(uniq, matrix, totals, shrinkage, log_prior, best)
