"""Trait prediction: each trait type of a collection predicted from the image, with a confidence.

Which trait types are predicted, and their labels: `trait_labels` (exclusive types only).

The methods (`METHODS`), measured against each other by `evaluate_holdout`:

- `knn`: the labelled tokens nearest to the token vote (`trait_methods.KnnModel`), over trait
  pixels (`trait_pixels`) or the index's image embeddings;
- `template`: how much of each value's template the image shows (`templates`), which generalises
  from one or two labelled tokens and reads a part half hidden under another layer;
- `knn_template`: the log-linear pool of the two;
- `zero_shot`: the image embedding against the text embedding of a caption naming each value
  ("CryptoPunk: a Female 2."); needs the fine-tuned text tower;
- `combined`: the pool of the best pixel method (`knn_template`, else `knn`) and zero-shot,
  zero-shot weighted by `zero_shot_weight`.

Each method's own temperature is fitted on the labelled tokens (the training split in an
evaluation). A pool of two confident methods is over-confident, so the evaluation also fits one
calibration temperature per (type, method) on its held-out fold (`trait_methods.Calibration`) and
reports the expected calibration error before and after. `trait_predictions` uses, per trait type,
the method of best hold-out top-1 with that calibration: the choice follows the measurement.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from nft_pipeline.classify.templates import MIN_EXPLAINING_TOKENS, fit_templates, reliable_painting
from nft_pipeline.classify.trait_labels import CollectionLabels, TraitLabels, collection_labels
from nft_pipeline.classify.trait_methods import Calibration, KnnModel, ZeroShotModel, combine, normalise, sharpen
from nft_pipeline.classify.trait_pixels import pixel_weights, trait_pixel_features

METHODS = ("knn", "template", "zero_shot", "knn_template", "combined")  # cheapest first: the choice on a tie
TEMPLATE_STRIDE = 2
SUGGESTION_FOLDS = 5  # labelled tokens' templates are cross-fitted: a token never votes for itself

TRAIT_PREDICTIONS = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("token_id", pa.string(), nullable=False),
        pa.field("trait_type", pa.string(), nullable=False),
        pa.field("value", pa.string(), nullable=False),  # the prediction ("none": the token lacks the type)
        pa.field("confidence", pa.float32(), nullable=False),  # calibrated on the evaluation's held-out fold
        pa.field("method", pa.string(), nullable=False),  # one of METHODS
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
        pa.field("mean_confidence", pa.float64(), nullable=False),  # before calibration
        pa.field("ece", pa.float64(), nullable=False),  # expected calibration error, 10 bins, before calibration
        pa.field("ece_calibrated", pa.float64(), nullable=False),  # after, two-fold cross-fitted in the held-out fold
        pa.field("calibration_temperature", pa.float64(), nullable=False),  # fitted on the whole held-out fold
        pa.field("temperature", pa.float64(), nullable=False),  # the method's own (kNN, template, zero-shot; pool weight)
        pa.field("chosen", pa.bool_(), nullable=False),  # the method trait_predictions uses for this type
    ]
)


# ---------------------------------------------------------------- features and methods


KNN_FEATURES = ("trait_pixels", "embedding")


@dataclass(frozen=True)
class TraitFeatures:
    """What the methods see, rows aligned with `CollectionLabels.token_ids`.

    `samples`: sampled RGBA images (`pixels.read_samples`), for kNN over `trait_pixels` and the
    templates; `embedding`: the index's image embeddings, for kNN over `embedding` and zero-shot;
    `prompts`: (type, value) -> the text embedding of its caption (zero-shot; None: no model).
    `has_image`: rows that have an image (and an embedding where one is used).
    """

    knn: str = "trait_pixels"  # which features kNN uses: trait_pixels | embedding
    samples: np.ndarray | None = None
    embedding: np.ndarray | None = None
    prompts: Mapping[tuple[str, str], np.ndarray] | None = None
    has_image: np.ndarray | None = None
    n_pixels: int = 256
    # computed once per (type, labels[, train rows]) and kept: evaluation and prediction ask again
    _paintings: dict[tuple[str, bytes], np.ndarray] = field(default_factory=dict, init=False, compare=False, repr=False)
    _knn_features: dict[tuple[str, bytes, bytes], object] = field(default_factory=dict, init=False, compare=False, repr=False)

    def available(self, n: int) -> np.ndarray:
        return np.ones(n, dtype=bool) if self.has_image is None else self.has_image

    def explained_by(self, types: Sequence[TraitLabels]) -> np.ndarray | None:
        """N x P bool over `template_codes`: the pixels the tokens' values of `types` paint
        (`templates.reliable_painting`, learnt from every token labelled with that type; computed
        once per type and kept). None without other types."""
        if not types:
            return None
        codes = self.template_codes
        explained = np.zeros(codes.shape, dtype=bool)
        for trait in types:
            key = (trait.trait_type, _digest(trait.labels))
            if key not in self._paintings:
                self._paintings[key] = reliable_painting(codes, trait.labels, MIN_EXPLAINING_TOKENS, 0.0)
            explained |= self._paintings[key]
        return explained

    @property
    def codes(self) -> np.ndarray | None:
        """N x P packed RGBA colours of every sample, what kNN's trait pixels compare."""
        return None if self.samples is None else np.ascontiguousarray(self.samples).view("<u4").reshape(len(self.samples), -1)

    @property
    def template_codes(self) -> np.ndarray | None:
        """The packed colours of every `TEMPLATE_STRIDE`-th sample per axis, what the templates
        compare: a 32 x 32 grid of a 64 sample still hits every pixel of art up to 32 pixels wide
        (16 px blocks or larger), at a quarter of the cost. (kNN keeps the full grid: on the
        photographic critters the finer grid is worth 3-7 points of top-1.)"""
        if self.samples is None:
            return None
        grid = np.ascontiguousarray(self.samples[:, ::TEMPLATE_STRIDE, ::TEMPLATE_STRIDE])
        return grid.view("<u4").reshape(len(grid), -1)

    def knn_matrix(self, labels: TraitLabels, train: np.ndarray) -> tuple[np.ndarray, str]:
        """(features of every row, metric) for kNN on this trait type, learnt from the `train` rows."""
        if self.knn == "embedding":
            if self.embedding is None:
                raise ValueError("kNN over embeddings needs the index's embeddings")
            return normalise(self.embedding), "cosine"
        if self.samples is None:
            raise ValueError("kNN over trait pixels needs the sampled images")
        key = (labels.trait_type, _digest(labels.labels), _digest(train))
        if key not in self._knn_features:
            codes = self.codes
            weights = pixel_weights(codes[train], labels.labels[train])
            self._knn_features[key] = trait_pixel_features(codes, labels.labels, train, weights, self.n_pixels)
        return self._knn_features[key], "dot"


def _digest(array: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).digest()


def _class_matrix(features: TraitFeatures, labels: TraitLabels) -> np.ndarray | None:
    if features.embedding is None or features.prompts is None:
        return None
    return np.stack([features.prompts[(labels.trait_type, value)] for value in labels.vocabulary])


def _template_probabilities(
    features: TraitFeatures, trait: TraitLabels, others: Sequence[TraitLabels], train: np.ndarray, rows: np.ndarray, cross_fit: bool,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """(probabilities of `rows`, temperature) from templates learnt on `train`; with `cross_fit` the
    rows are the train rows, each predicted from templates fitted on the other folds."""
    codes = features.template_codes
    n = len(trait.vocabulary)
    explained = features.explained_by(others)

    def fit(rows_):
        return fit_templates(codes[rows_], trait.labels[rows_], n, None if explained is None else explained[rows_])

    if not cross_fit:
        model = fit(train)
        return model.predict(codes[rows]), model.temperature
    probs = np.empty((len(train), n))
    folds = np.array_split(np.random.default_rng(seed).permutation(len(train)), min(SUGGESTION_FOLDS, len(train)))
    temperatures = []
    for fold in folds:
        model = fit(train[np.setdiff1d(np.arange(len(train)), fold)])
        probs[fold] = model.predict(codes[train[fold]])
        temperatures.append(model.temperature)
    return probs, float(np.median(temperatures))


PARTS = {"knn_template": {"knn", "template"}, "combined": {"knn", "template", "zero_shot"}}  # what a pooled method needs


def method_probabilities(
    features: TraitFeatures, trait: TraitLabels, train: np.ndarray, query: np.ndarray, k: int, zero_shot_weight: float,
    others: Sequence[TraitLabels] = (), leave_one_out: bool = False, wanted: str | None = None,
) -> dict[str, tuple[np.ndarray, float]]:
    """method -> (probabilities of `query` rows, the method's own temperature), trained on `train` rows.

    `others`: the collection's other exclusive types (their labels on the train rows tell the
    templates which pixels other layers explain). With `leave_one_out` the queries are the training
    rows, each predicted without itself (kNN) or from the other folds (templates). `wanted`: one
    method, computing only it and what it pools (None: every method the features allow)."""
    y = trait.labels[train]
    n = len(trait.vocabulary)
    rows = train if leave_one_out else query
    need = None if wanted is None else {wanted} | PARTS.get(wanted, set())
    out = {}
    if need is None or "knn" in need:
        x, metric = features.knn_matrix(trait, train)
        knn = KnnModel.fit(x[train], y, n, k, metric)
        out["knn"] = (knn.predict(x[rows], leave_one_out), knn.temperature)
    if features.samples is not None and features.knn == "trait_pixels" and (need is None or "template" in need):
        out["template"] = _template_probabilities(features, trait, others, train, rows, leave_one_out)
        if "knn" in out:
            out["knn_template"] = (combine(out["knn"][0], out["template"][0], 1.0), 1.0)
    classes = _class_matrix(features, trait)
    if classes is not None and (need is None or "zero_shot" in need):
        zero_shot = ZeroShotModel.fit(classes, features.embedding[train], y)
        zs = zero_shot.predict(features.embedding[rows])
        out["zero_shot"] = (zs, zero_shot.temperature)
        pixels = "knn_template" if "knn_template" in out else "knn"
        if pixels in out:
            out["combined"] = (combine(out[pixels][0], zs, zero_shot_weight), zero_shot_weight)
    return out


def _method_features(features: TraitFeatures, method: str) -> str:
    pixels = "trait_pixels" if features.knn == "trait_pixels" else features.knn
    return {"knn": features.knn, "template": "trait_pixels", "knn_template": "trait_pixels", "zero_shot": "embedding"}.get(
        method, f"{pixels}+embedding"
    )


# ---------------------------------------------------------------- evaluation


def holdout_split(trait: TraitLabels, usable: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(test, train) rows: `fraction` of the usable labelled rows hidden, seeded per trait type."""
    rng = np.random.default_rng([seed, len(trait.trait_type), *trait.trait_type.encode()])
    shuffled = rng.permutation(usable)
    n_test = max(1, int(round(fraction * len(shuffled))))
    return np.sort(shuffled[:n_test]), np.sort(shuffled[n_test:])


def holdout_probabilities(
    labels: CollectionLabels, features: TraitFeatures, trait: TraitLabels, fraction: float = 0.2, seed: int = 0, k: int = 10,
    zero_shot_weight: float = 0.5, wanted: str | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, float]]] | None:
    """(test rows, train rows, `method_probabilities` of the test rows) of one trait type's seeded
    hold-out (`wanted`: one method only); None when fewer than two labelled rows would train."""
    usable = trait.labelled[features.available(len(trait.labels))[trait.labelled]]
    test, train = holdout_split(trait, usable, fraction, seed)
    if len(train) < 2:
        return None
    others = [o for o in labels.types if o is not trait]
    return test, train, method_probabilities(features, trait, train, test, k, zero_shot_weight, others, wanted=wanted)


def evaluate_holdout(
    collection: str, labels: CollectionLabels, features: TraitFeatures, fraction: float = 0.2, seed: int = 0,
    k: int = 10, zero_shot_weight: float = 0.5,
) -> pa.Table:
    """Hide `fraction` of each trait type's labels (seeded), predict them from the rest: one row per
    (trait type, method) with top-1 accuracy, mean confidence, the calibration error before and
    after a temperature fitted on the held-out fold, and which method `trait_predictions` uses."""
    rows = []
    for trait in labels.types:
        held_out = holdout_probabilities(labels, features, trait, fraction, seed, k, zero_shot_weight)
        if held_out is None:
            continue
        test, train, methods = held_out
        truth = trait.labels[test]
        found = []
        for method, (probs, temperature) in methods.items():
            calibration = Calibration.fit(probs, truth, seed)
            found.append(
                {
                    "collection": collection,
                    "trait_type": trait.trait_type,
                    "method": method,
                    "features": _method_features(features, method),
                    "n_train": len(train),
                    "n_test": len(test),
                    "n_values": len(trait.vocabulary),
                    "top1": float((probs.argmax(1) == truth).mean()),
                    "mean_confidence": float(probs.max(1).mean()),
                    "ece": calibration.ece_before,
                    "ece_calibrated": calibration.ece_after,
                    "calibration_temperature": calibration.temperature,
                    "temperature": temperature,
                    "chosen": False,
                }
            )
        best = max(found, key=lambda r: (r["top1"], -METHODS.index(r["method"])))
        best["chosen"] = True
        rows += found
    return pa.Table.from_pylist(rows, schema=TRAIT_EVALUATION)


@dataclass(frozen=True)
class MethodChoice:
    """The method a trait type is predicted with and the calibration temperature applied to it."""

    method: str
    calibration_temperature: float = 1.0


def chosen_methods(evaluation: pa.Table) -> dict[str, MethodChoice]:
    """trait type -> the evaluation's chosen method and its calibration."""
    return {
        r["trait_type"]: MethodChoice(r["method"], r["calibration_temperature"])
        for r in evaluation.select(["trait_type", "method", "chosen", "calibration_temperature"]).to_pylist()
        if r["chosen"]
    }


# ---------------------------------------------------------------- predictions


def predict_traits(
    collection: str, labels: CollectionLabels, features: TraitFeatures, choices: Mapping[str, MethodChoice] | None = None,
    k: int = 10, zero_shot_weight: float = 0.5,
) -> pa.Table:
    """The `trait_predictions` rows of a collection: for every token with an image and each
    predicted trait type, the predicted value and its calibrated confidence, by the type's chosen
    method (`choices`; default `knn_template` where available, uncalibrated). Tokens that declare
    no traits are predicted from every labelled token (`missing_metadata`); labelled tokens get a
    leave-one-out prediction (`suggestion`) that says whether it agrees with their declaration."""
    rows = []
    available = features.available(len(labels.token_ids))
    choices = choices or {}
    for trait in labels.types:
        labelled = trait.labelled[available[trait.labelled]]
        missing = np.flatnonzero(~labels.declared & available)
        if len(labelled) < 2:
            continue
        others = [o for o in labels.types if o is not trait]
        choice = choices.get(trait.trait_type, MethodChoice("knn_template"))
        suggestions = method_probabilities(features, trait, labelled, labelled, k, zero_shot_weight, others, True, choice.method)
        method = choice.method if choice.method in suggestions else "knn"
        if method not in suggestions:
            suggestions = method_probabilities(features, trait, labelled, labelled, k, zero_shot_weight, others, True, method)
        blocks = [(labelled, suggestions[method][0], "suggestion")]
        if len(missing):
            predicted = method_probabilities(features, trait, labelled, missing, k, zero_shot_weight, others, wanted=method)
            blocks.append((missing, predicted[method][0], "missing_metadata"))
        for tokens, probs, source in blocks:
            probs = sharpen(probs, choice.calibration_temperature)
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
                        "method": method,
                        "declared_value": declared,
                        "source": source,
                        "agrees": None if declared is None else declared == value,
                    }
                )
    return pa.Table.from_pylist(rows, schema=TRAIT_PREDICTIONS)


def agreement_counts(predictions: pa.Table) -> dict[str, dict[str, int]]:
    """trait type -> counts of suggestions that agree / disagree and of missing-metadata predictions."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in predictions.select(["trait_type", "source", "agrees"]).to_pylist():
        key = "missing_metadata" if row["source"] == "missing_metadata" else "agrees" if row["agrees"] else "disagrees"
        counts[row["trait_type"]][key] += 1
    return {t: dict(c) for t, c in counts.items()}


def collection_trait_predictions(
    collection: str, images: pa.Table, captions: pa.Table, files, holdout_fraction: float = 0.2,
    seed: int = 0, threads: int = 2,
) -> tuple[pa.Table, pa.Table, CollectionLabels]:
    """(trait_predictions rows, hold-out evaluation, labels) of one collection from its
    `standardized_images` and `captions` tables, by the pixel methods (they need no model), each
    trait type by its method of best hold-out top-1, calibrated on the held-out fold.

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
    return predict_traits(collection, labels, features, chosen_methods(evaluation)), evaluation, labels
