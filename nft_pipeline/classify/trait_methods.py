"""The trait prediction methods and their calibration: kNN votes, zero-shot, their pool.

- `KnnModel`: the labelled tokens nearest to the token (cosine over embeddings, or a dot product
  over `trait_pixels` features) vote with weights exp(similarity / temperature); the confidence is
  the winning share of the votes; the temperature is fitted leave-one-out (NLL).
- `ZeroShotModel`: the image embedding against the text embedding of a caption naming each value,
  softmax over the vocabulary.
- `combine`: the log-linear pool of two distributions.
- `Calibration`: one temperature on a distribution's log-probabilities, fitted on the held-out
  fold of the evaluation (a pool of two confident methods is over-confident), with the expected
  calibration error before and after measured by two-fold cross-fitting inside that fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEMPERATURES = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
CALIBRATION_TEMPERATURES = tuple(float(t) for t in np.geomspace(0.25, 8, 16))
CALIBRATION_BINS = 10
MIN_ECE_GAIN = 0.01  # a calibration temperature is applied only where it lowers the cross-fitted ECE by this much


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


DENSE_COLUMNS = 8192  # sparse features with at most this many columns are multiplied dense (BLAS)


def neighbours(
    train_x: np.ndarray, query_x: np.ndarray, k: int, self_index: np.ndarray | None = None, metric: str = "cosine",
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities) of each query's `k` nearest training rows, best first.

    `cosine`: rows are L2-normalised first; `dot`: the plain dot product (`trait_pixel_features`,
    where it is the weighted share of matching pixels). `self_index`: per query, its own row among
    the training rows (-1: none), left out of its neighbours (leave-one-out). The similarity
    matrix is dense (most tokens share some pixel), so sparse features of a few thousand columns
    are multiplied as dense blocks: a sparse product that fills up is ten times slower.
    """
    if metric == "cosine":
        train_x, query_x = normalise(train_x), normalise(query_x)
    dense = not hasattr(train_x, "tocsr") or train_x.shape[1] <= DENSE_COLUMNS
    if dense:
        train_x = np.asarray(train_x.toarray() if hasattr(train_x, "toarray") else train_x, np.float32)
    train_t = train_x.T if dense else train_x.T.tocsc()
    k = min(k, train_x.shape[0] - int(self_index is not None and bool((self_index >= 0).any())))
    n_query = query_x.shape[0]
    indices = np.empty((n_query, k), dtype=np.int64)
    sims = np.empty((n_query, k), dtype=np.float32)
    for start in range(0, n_query, chunk):
        queries = query_x[start : start + chunk]
        if dense and hasattr(queries, "toarray"):
            queries = queries.toarray()
        block = queries @ train_t
        block = np.asarray(block.toarray() if hasattr(block, "toarray") else block, dtype=np.float32)
        if self_index is not None:
            own = self_index[start : start + len(block)]
            rows = np.flatnonzero(own >= 0)
            block[rows, own[rows]] = -np.inf
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(block, top, 1)
        order = np.argsort(-top_sims, axis=1)
        indices[start : start + len(block)] = np.take_along_axis(top, order, 1)
        sims[start : start + len(block)] = np.take_along_axis(top_sims, order, 1)
    return indices, sims


def vote(neighbour_labels: np.ndarray, sims: np.ndarray, n_classes: int, temperature: float) -> np.ndarray:
    """Class distributions from neighbours' labels weighted by exp(similarity / temperature)."""
    weights = np.exp((sims - sims[:, :1]) / temperature)
    probs = np.zeros((len(sims), n_classes))
    np.add.at(probs, (np.repeat(np.arange(len(sims)), sims.shape[1]), neighbour_labels.reshape(-1)), weights.reshape(-1))
    return probs / probs.sum(1, keepdims=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-9, 1)).mean())


def reference_rows(labels: np.ndarray, cap: int, seed: int = 0) -> np.ndarray:
    """At most `cap` row indices of `labels`, sorted: every row of a value with few rows, the most
    common values sampled down to one equal quota (seeded), so rare values keep all their votes."""
    if len(labels) <= cap:
        return np.arange(len(labels))
    counts = np.bincount(labels)
    quota, remaining = cap, cap
    for i, count in enumerate(np.sort(counts)):  # water-filling, smallest values first
        quota = remaining // (len(counts) - i)
        if count > quota:
            break
        remaining -= count
    rng = np.random.default_rng(seed)
    keep = [np.flatnonzero(labels == v) for v in range(len(counts))]
    keep = [rows if len(rows) <= quota else rng.choice(rows, quota, replace=False) for rows in keep]
    return np.sort(np.concatenate(keep))


@dataclass(frozen=True)
class KnnModel:
    """kNN over reference rows of the training set (`reference_rows`: at most `max_reference`; the
    cost is queries x references); the temperature fitted leave-one-out on the references."""

    train_x: np.ndarray  # the reference rows' features
    train_y: np.ndarray
    n_classes: int
    reference: np.ndarray  # indices into the training rows given to `fit`
    n_train: int
    k: int = 10
    temperature: float = 0.05
    metric: str = "cosine"

    @classmethod
    def fit(
        cls, train_x: np.ndarray, train_y: np.ndarray, n_classes: int, k: int = 10, metric: str = "cosine", max_reference: int = 2500,
    ) -> KnnModel:
        reference = reference_rows(train_y, max_reference)
        x, y = train_x[reference], train_y[reference]
        index, sims = neighbours(x, x, k, self_index=np.arange(len(reference)), metric=metric)
        best = min(TEMPERATURES, key=lambda t: nll(vote(y[index], sims, n_classes, t), y))
        return cls(x, y, n_classes, reference, len(train_y), k, best, metric)

    def predict(self, query_x: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
        """Class distributions of `query_x`; with `leave_one_out` the queries are the training rows
        given to `fit` (same order), each voted on without itself."""
        self_index = None
        if leave_one_out:
            self_index = np.full(self.n_train, -1)
            self_index[self.reference] = np.arange(len(self.reference))
        index, sims = neighbours(self.train_x, query_x, self.k, self_index, self.metric)
        return vote(self.train_y[index], sims, self.n_classes, self.temperature)


@dataclass(frozen=True)
class ZeroShotModel:
    """Cosine of image embeddings to one text embedding per value, softmax at a fitted temperature."""

    class_x: np.ndarray  # n_classes x D, L2-normalised
    temperature: float = 0.01

    @classmethod
    def fit(cls, class_x: np.ndarray, train_x: np.ndarray, train_y: np.ndarray) -> ZeroShotModel:
        sims = normalise(train_x) @ normalise(class_x).T
        best = min(TEMPERATURES, key=lambda t: nll(softmax(sims / t), train_y))
        return cls(normalise(class_x), best)

    def predict(self, image_x: np.ndarray) -> np.ndarray:
        return softmax((normalise(image_x) @ self.class_x.T) / self.temperature)


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


def sharpen(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / temperature): > 1 softens an over-confident distribution."""
    return softmax(np.log(np.clip(probs, 1e-9, 1)) / temperature)


def fit_calibration(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature (`CALIBRATION_TEMPERATURES`, 1 among them in effect) of least NLL on these rows."""
    if not len(labels):
        return 1.0
    return min((1.0, *CALIBRATION_TEMPERATURES), key=lambda t: nll(sharpen(probs, t), labels))


@dataclass(frozen=True)
class Calibration:
    """A temperature fitted on held-out rows and the ECE before and after it.

    `ece_after` is measured by two-fold cross-fitting inside the held-out rows (each half scored
    with the temperature fitted on the other), so it is not the fitted rows' own error. Where that
    is not better than `ece_before` by `MIN_ECE_GAIN` (a hundred rows are a noisy fit), the temperature is 1: the
    calibration is applied only where it measurably helps, and `ece_after` is then `ece_before`."""

    temperature: float
    ece_before: float
    ece_after: float

    @classmethod
    def fit(cls, probs: np.ndarray, labels: np.ndarray, seed: int = 0) -> Calibration:
        correct = probs.argmax(1) == labels
        halves = np.array_split(np.random.default_rng(seed).permutation(len(labels)), 2)
        confidence = np.empty(len(labels))
        for fit_rows, score_rows in (halves, halves[::-1]):
            confidence[score_rows] = sharpen(probs[score_rows], fit_calibration(probs[fit_rows], labels[fit_rows])).max(1)
        before, after = expected_calibration_error(probs.max(1), correct), expected_calibration_error(confidence, correct)
        if after > before - MIN_ECE_GAIN:
            return cls(1.0, before, before)
        return cls(fit_calibration(probs, labels), before, after)
