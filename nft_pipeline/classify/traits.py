"""Trait prediction: each trait type of a collection predicted from the image, with a confidence.

A trait type is predicted when it is exclusive (no token declares two values of it), like
CryptoPunks' `Type` or each Nouns layer; a type some tokens lack gets the value `none` for them. A
multi-valued type (CryptoPunks' `Accessory`) is left out and said so (`skipped_types`).

Three methods, measured against each other by `evaluate_holdout`:

- `knn`: the labelled tokens nearest to the token (cosine over a feature vector: the index's image
  embeddings, or the sampled pixels) vote with weights exp(similarity / temperature); the
  confidence is the winning share of the votes.
- `zero_shot`: the image embedding against the text embedding of a caption naming each value
  ("CryptoPunk: a Female 2."), softmax over the vocabulary; needs the fine-tuned text tower.
- `combined`: the product of the two distributions, zero-shot weighted by `zero_shot_weight`
  (a log-linear pool), renormalised.

Both temperatures are fitted on the labelled tokens themselves (the training split in an
evaluation): the one of a small grid that minimises the negative log-likelihood, leave-one-out for
kNN, which is what makes a confidence of 0.8 mean right about 8 times in 10 (calibration: the
expected calibration error, `expected_calibration_error`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

NONE_VALUE = "none"
METHODS = ("knn", "zero_shot", "combined")
TEMPERATURES = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
CALIBRATION_BINS = 10

TRAIT_PREDICTIONS = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("trait_type", pa.string(), nullable=False),
        pa.field("value", pa.string(), nullable=False),  # the prediction ("none": the token lacks the type)
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("method", pa.string(), nullable=False),  # knn | zero_shot | combined
        pa.field("declared_value", pa.string()),  # null: the token declares no traits (missing or failed metadata)
        pa.field("source", pa.string(), nullable=False),  # missing_metadata | suggestion
        pa.field("agrees", pa.bool_()),  # prediction == declared value; null without a declaration
    ]
)
TRAIT_EVALUATION = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("trait_type", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("features", pa.string(), nullable=False),
        pa.field("n_train", pa.int32(), nullable=False),
        pa.field("n_test", pa.int32(), nullable=False),
        pa.field("n_values", pa.int32(), nullable=False),
        pa.field("top1", pa.float64(), nullable=False),
        pa.field("mean_confidence", pa.float64(), nullable=False),
        pa.field("ece", pa.float64(), nullable=False),  # expected calibration error, 10 bins
        pa.field("temperature", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class TraitLabels:
    """One exclusive trait type over a collection's tokens: value index per token, -1 where unlabelled."""

    trait_type: str
    vocabulary: list[str]
    labels: np.ndarray  # N ints, aligned with the token order the caller gave

    @property
    def labelled(self) -> np.ndarray:
        return np.flatnonzero(self.labels >= 0)


@dataclass(frozen=True)
class CollectionLabels:
    token_ids: list[str]
    declared: np.ndarray  # N bool: the token declares traits (its metadata loaded and has attributes)
    types: list[TraitLabels]
    skipped_types: dict[str, str] = field(default_factory=dict)  # trait type -> why it is not predicted
    phrases: dict[tuple[str, str], str] = field(default_factory=dict)  # (type, value) -> caption words


def collection_labels(token_ids: Sequence[str], tags: Mapping[str, Sequence[Mapping]], min_tokens: int = 2) -> CollectionLabels:
    """Labels per exclusive trait type from caption tags (token id -> tags; absent or empty: undeclared)."""
    declared = np.array([bool(tags.get(t)) for t in token_ids])
    values: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    phrases: dict[tuple[str, str], str] = {}
    for i, token in enumerate(token_ids):
        for tag in tags.get(token) or ():
            trait_type = tag["trait_type"] or ""
            values[trait_type][i].add(tag["value"])
            phrases.setdefault((trait_type, tag["value"]), tag.get("phrase") or tag["value"])
    types, skipped = [], {}
    n_declared = int(declared.sum())
    for trait_type, per_token in values.items():
        if not trait_type:
            skipped[trait_type] = "untyped values"
            continue
        if any(len(v) > 1 for v in per_token.values()):
            skipped[trait_type] = "multi-valued (a token declares several values)"
            continue
        vocabulary = sorted({v for vs in per_token.values() for v in vs})
        if len(per_token) < n_declared:
            vocabulary.append(NONE_VALUE)
        index = {v: j for j, v in enumerate(vocabulary)}
        labels = np.full(len(token_ids), -1, dtype=np.int64)
        for i in np.flatnonzero(declared):
            labels[i] = index[next(iter(per_token[i]))] if i in per_token else index[NONE_VALUE]
        if len(vocabulary) < 2 or n_declared < min_tokens:
            skipped[trait_type] = "fewer than two values or too few labelled tokens"
            continue
        types.append(TraitLabels(trait_type, vocabulary, labels))
    return CollectionLabels(list(token_ids), declared, types, skipped, phrases)


# ---------------------------------------------------------------- the methods


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def neighbours(
    train_x: np.ndarray, query_x: np.ndarray, k: int, exclude_self: bool = False, metric: str = "cosine", chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities) of each query's `k` nearest training rows, best first.

    `cosine`: rows are L2-normalised first; `dot`: the plain dot product (`trait_pixel_features`,
    where it is the weighted share of matching pixels). With `exclude_self` the
    queries are the training rows themselves (same order) and each is left out of its own
    neighbours (leave-one-out).
    """
    if metric == "cosine":
        train_x, query_x = _normalise(train_x), _normalise(query_x)
    dense = not hasattr(train_x, "tocsr")
    if dense:
        train_x, query_x = np.asarray(train_x, np.float32), np.asarray(query_x, np.float32)
    train_t = train_x.T if dense else train_x.T.tocsc()
    k = min(k, train_x.shape[0] - int(exclude_self))
    n_query = query_x.shape[0]
    indices = np.empty((n_query, k), dtype=np.int64)
    sims = np.empty((n_query, k), dtype=np.float32)
    for start in range(0, n_query, chunk):
        block = query_x[start : start + chunk] @ train_t
        block = np.asarray(block if dense else block.toarray(), dtype=np.float32)
        if exclude_self:
            rows = np.arange(len(block))
            block[rows, rows + start] = -np.inf
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(block, top, 1)
        order = np.argsort(-top_sims, axis=1)
        indices[start : start + len(block)] = np.take_along_axis(top, order, 1)
        sims[start : start + len(block)] = np.take_along_axis(top_sims, order, 1)
    return indices, sims


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
    _, colour = np.unique(codes, return_inverse=True)
    colour = colour.reshape(n, p).astype(np.int64)
    k = int(colour.max()) + 1
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


def vote(neighbour_labels: np.ndarray, sims: np.ndarray, n_classes: int, temperature: float) -> np.ndarray:
    """Class distributions from neighbours' labels weighted by exp(similarity / temperature)."""
    weights = np.exp((sims - sims[:, :1]) / temperature)
    probs = np.zeros((len(sims), n_classes))
    np.add.at(probs, (np.repeat(np.arange(len(sims)), sims.shape[1]), neighbour_labels.reshape(-1)), weights.reshape(-1))
    return probs / probs.sum(1, keepdims=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-9, 1)).mean())


@dataclass(frozen=True)
class KnnModel:
    """kNN over `train_x` with labels `train_y`; the temperature fitted leave-one-out."""

    train_x: np.ndarray
    train_y: np.ndarray
    n_classes: int
    k: int = 10
    temperature: float = 0.05
    metric: str = "cosine"

    @classmethod
    def fit(cls, train_x: np.ndarray, train_y: np.ndarray, n_classes: int, k: int = 10, metric: str = "cosine") -> KnnModel:
        index, sims = neighbours(train_x, train_x, k, exclude_self=True, metric=metric)
        best = min(TEMPERATURES, key=lambda t: _nll(vote(train_y[index], sims, n_classes, t), train_y))
        return cls(train_x, train_y, n_classes, k, best, metric)

    def predict(self, query_x: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        index, sims = neighbours(self.train_x, query_x, self.k, exclude_self, self.metric)
        return vote(self.train_y[index], sims, self.n_classes, self.temperature)


@dataclass(frozen=True)
class ZeroShotModel:
    """Cosine of image embeddings to one text embedding per value, softmax at a fitted temperature."""

    class_x: np.ndarray  # n_classes x D, L2-normalised
    temperature: float = 0.01

    @classmethod
    def fit(cls, class_x: np.ndarray, train_x: np.ndarray, train_y: np.ndarray) -> ZeroShotModel:
        sims = _normalise(train_x) @ _normalise(class_x).T
        best = min(TEMPERATURES, key=lambda t: _nll(softmax(sims / t), train_y))
        return cls(_normalise(class_x), best)

    def predict(self, image_x: np.ndarray) -> np.ndarray:
        return softmax((_normalise(image_x) @ self.class_x.T) / self.temperature)


def combine(knn: np.ndarray, zero_shot: np.ndarray, zero_shot_weight: float = 0.5) -> np.ndarray:
    """The log-linear pool of two class distributions."""
    logits = np.log(np.clip(knn, 1e-6, 1)) + zero_shot_weight * np.log(np.clip(zero_shot, 1e-9, 1))
    return softmax(logits)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| x the bin's share of tokens."""
    if not len(confidence):
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


# ---------------------------------------------------------------- evaluation


KNN_FEATURES = ("trait_pixels", "embedding")


@dataclass(frozen=True)
class TraitFeatures:
    """What the methods see, rows aligned with `CollectionLabels.token_ids`.

    `samples`: sampled RGBA images (`pixels.read_samples`), for kNN over `trait_pixels`;
    `embedding`: the index's image embeddings, for kNN over `embedding` and for zero-shot;
    `prompts`: (type, value) -> the text embedding of its caption (zero-shot; None: no model).
    `has_image`: rows that have an image (and an embedding where one is used).
    """

    knn: str = "trait_pixels"  # which features kNN uses: trait_pixels | embedding
    samples: np.ndarray | None = None
    embedding: np.ndarray | None = None
    prompts: Mapping[tuple[str, str], np.ndarray] | None = None
    has_image: np.ndarray | None = None
    n_pixels: int = 256

    def available(self, n: int) -> np.ndarray:
        return np.ones(n, dtype=bool) if self.has_image is None else self.has_image

    def knn_matrix(self, labels: TraitLabels, train: np.ndarray) -> tuple[np.ndarray, str]:
        """(features of every row, metric) for kNN on this trait type, learnt from the `train` rows."""
        if self.knn == "embedding":
            if self.embedding is None:
                raise ValueError("kNN over embeddings needs the index's embeddings")
            return _normalise(self.embedding), "cosine"
        if self.samples is None:
            raise ValueError("kNN over trait pixels needs the sampled images")
        codes = np.ascontiguousarray(self.samples).view("<u4").reshape(len(self.samples), -1)
        weights = pixel_weights(codes[train], labels.labels[train])
        return trait_pixel_features(codes, labels.labels, train, weights, self.n_pixels), "dot"


def _class_matrix(features: TraitFeatures, labels: TraitLabels) -> np.ndarray | None:
    if features.embedding is None or features.prompts is None:
        return None
    return np.stack([features.prompts[(labels.trait_type, value)] for value in labels.vocabulary])


def method_probabilities(
    features: TraitFeatures, labels: TraitLabels, train: np.ndarray, query: np.ndarray, k: int, zero_shot_weight: float,
    leave_one_out: bool = False,
) -> dict[str, tuple[np.ndarray, float]]:
    """method -> (probabilities of `query` rows, the fitted temperature), trained on `train` rows.

    With `leave_one_out` the queries are the training rows, each predicted without itself."""
    y = labels.labels[train]
    n = len(labels.vocabulary)
    x, metric = features.knn_matrix(labels, train)
    knn = KnnModel.fit(x[train], y, n, k, metric)
    rows = train if leave_one_out else query
    out = {"knn": (knn.predict(x[rows], exclude_self=leave_one_out), knn.temperature)}
    classes = _class_matrix(features, labels)
    if classes is not None:
        zero_shot = ZeroShotModel.fit(classes, features.embedding[train], y)
        zs = zero_shot.predict(features.embedding[rows])
        out["zero_shot"] = (zs, zero_shot.temperature)
        out["combined"] = (combine(out["knn"][0], zs, zero_shot_weight), zero_shot_weight)
    return out


def evaluate_holdout(
    collection: str, labels: CollectionLabels, features: TraitFeatures, fraction: float = 0.2, seed: int = 0,
    k: int = 10, zero_shot_weight: float = 0.5,
) -> pa.Table:
    """Hide `fraction` of each trait type's labels (seeded), predict them from the rest: one row per
    (trait type, method) with top-1 accuracy, mean confidence and the calibration error."""
    rows = []
    for trait in labels.types:
        usable = trait.labelled[features.available(len(trait.labels))[trait.labelled]]
        rng = np.random.default_rng([seed, len(trait.trait_type), *trait.trait_type.encode()])
        shuffled = rng.permutation(usable)
        n_test = max(1, int(round(fraction * len(shuffled))))
        test, train = np.sort(shuffled[:n_test]), np.sort(shuffled[n_test:])
        if len(train) < 2:
            continue
        truth = trait.labels[test]
        for method, (probs, temperature) in method_probabilities(features, trait, train, test, k, zero_shot_weight).items():
            predicted, confidence = probs.argmax(1), probs.max(1)
            correct = predicted == truth
            rows.append(
                {
                    "collection": collection,
                    "trait_type": trait.trait_type,
                    "method": method,
                    "features": features.knn if method == "knn" else "embedding" if method == "zero_shot" else f"{features.knn}+embedding",
                    "n_train": len(train),
                    "n_test": len(test),
                    "n_values": len(trait.vocabulary),
                    "top1": float(correct.mean()),
                    "mean_confidence": float(confidence.mean()),
                    "ece": expected_calibration_error(confidence, correct),
                    "temperature": temperature,
                }
            )
    return pa.Table.from_pylist(rows, schema=TRAIT_EVALUATION)


# ---------------------------------------------------------------- predictions


def predict_traits(
    collection: str, labels: CollectionLabels, features: TraitFeatures, method: str = "knn", k: int = 10,
    zero_shot_weight: float = 0.5,
) -> pa.Table:
    """The `trait_predictions` rows of a collection: for every token with an image and each
    predicted trait type, the predicted value and its confidence. Tokens that declare no traits
    are predicted from every labelled token (`missing_metadata`); labelled tokens get a
    leave-one-out prediction (`suggestion`) that says whether it agrees with their declaration."""
    rows = []
    available = features.available(len(labels.token_ids))
    for trait in labels.types:
        labelled = trait.labelled[available[trait.labelled]]
        missing = np.flatnonzero(~labels.declared & available)
        if len(labelled) < 2:
            continue
        suggestions = method_probabilities(features, trait, labelled, labelled, k, zero_shot_weight, leave_one_out=True)
        chosen = method if method in suggestions else "knn"
        blocks = [(labelled, suggestions[chosen][0], "suggestion")]
        if len(missing):
            blocks.append((missing, method_probabilities(features, trait, labelled, missing, k, zero_shot_weight)[chosen][0], "missing_metadata"))
        for tokens, probs, source in blocks:
            for i, p in zip(tokens, probs):
                value = trait.vocabulary[int(p.argmax())]
                declared = trait.vocabulary[trait.labels[i]] if trait.labels[i] >= 0 else None
                rows.append(
                    {
                        "collection": collection,
                        "token_id": labels.token_ids[i],
                        "trait_type": trait.trait_type,
                        "value": value,
                        "confidence": float(p.max()),
                        "method": chosen,
                        "declared_value": declared,
                        "source": source,
                        "agrees": None if declared is None else declared == value,
                    }
                )
    return pa.Table.from_pylist(rows, schema=TRAIT_PREDICTIONS)


def prompt_texts(collection_title: str, labels: CollectionLabels, template) -> dict[tuple[str, str], str]:
    """(type, value) -> the caption that names only that value, as training captions word it."""
    from nft_pipeline.captions import render_caption

    texts = {}
    for trait in labels.types:
        for value in trait.vocabulary:
            if value == NONE_VALUE:
                texts[(trait.trait_type, value)] = render_caption(collection_title, [], template)
            else:
                phrase = labels.phrases.get((trait.trait_type, value), value)
                tag = {"trait_type": trait.trait_type, "value": value, "phrase": phrase}
                texts[(trait.trait_type, value)] = render_caption(collection_title, [tag], template)
    return texts


def agreement_counts(predictions: pa.Table) -> dict[str, dict[str, int]]:
    """trait type -> counts of suggestions that agree / disagree and of missing-metadata predictions."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in predictions.select(["trait_type", "source", "agrees"]).to_pylist():
        key = "missing_metadata" if row["source"] == "missing_metadata" else "agrees" if row["agrees"] else "disagrees"
        counts[row["trait_type"]][key] += 1
    return {t: dict(c) for t, c in counts.items()}


def collection_trait_predictions(
    collection: str, images: pa.Table, captions: pa.Table, files, method: str = "knn", holdout_fraction: float = 0.2,
    seed: int = 0, threads: int = 2,
) -> tuple[pa.Table, pa.Table, CollectionLabels]:
    """(trait_predictions rows, hold-out evaluation, labels) of one collection from its
    `standardized_images` and `captions` tables, by kNN over trait pixels (needs no model).

    Tokens without an ok image get no prediction; tokens whose caption has no tags (metadata that
    failed or has no attributes) are the `missing_metadata` ones.
    """
    from nft_pipeline.classify.pixels import read_samples

    ok = [r for r in images.select(["token_id", "status", "png_path"]).to_pylist() if r["status"] == "ok" and r["png_path"]]
    samples, readable = read_samples([files(r["png_path"]) for r in ok], threads=threads)
    tags = {r["token_id"]: r["tags"] for r in captions.select(["token_id", "tags"]).to_pylist()}
    labels = collection_labels([r["token_id"] for r in ok], tags)
    features = TraitFeatures(samples=samples, has_image=readable)
    evaluation = evaluate_holdout(collection, labels, features, holdout_fraction, seed)
    return predict_traits(collection, labels, features, method), evaluation, labels
