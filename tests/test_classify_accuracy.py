"""The accuracy goal of issue #18 on the real bundled art: >= 0.9 top-1 on CryptoPunks' Type and
on each Nouns layer with 20% of the labels hidden (seed 0), by the method `trait_predictions`
chooses, the images going through standardized PNGs and `read_samples` as in the pipeline.

The Nouns are the demo's 1,000 (tokens 0-999). A layer drawn entirely under the layers above it
shows nothing to predict from: 12% of the held-out bodies lie under a full-body accessory
(`body-*`), so the body is held to the goal on the Nouns whose body shows at least one pixel,
known from the ground-truth layers (`render_noun_layers`), not from any method's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nft_pipeline.captions import caption_token
from nft_pipeline.classify.pixels import read_samples
from nft_pipeline.classify.trait_labels import collection_labels
from nft_pipeline.classify.traits import TraitFeatures, chosen_methods, evaluate_holdout, holdout_probabilities
from nft_pipeline.samples.nouns import Nouns, noun_seed, render_noun, render_noun_layers
from nft_pipeline.samples.punks import CryptoPunks
from nft_pipeline.train.sample_data import standardize_pixel_art

pytestmark = pytest.mark.slow  # 1,000 Nouns and 2,000 punks through 512 px PNGs

N_NOUNS = 1000
N_PUNKS = 2000
GOAL = 0.9


def _features(art: list[np.ndarray], directory: Path) -> TraitFeatures:
    paths = []
    for i, pixels in enumerate(art):
        paths.append(directory / f"{i}.png")
        Image.fromarray(standardize_pixel_art(pixels)).save(paths[-1])
    samples, readable = read_samples(paths)
    assert readable.all()
    return TraitFeatures(samples=samples)


def _labels(slug: str, names: list[str], attributes: list[list[dict]]):
    tags = {str(i): caption_token(slug, name, str(i), attrs, None).tags for i, (name, attrs) in enumerate(zip(names, attributes))}
    return collection_labels([str(i) for i in range(len(names))], tags)


def _visible_layers(token_id: int) -> set[str]:
    """Layers with at least one pixel no layer above paints over."""
    layers = render_noun_layers(noun_seed(token_id))
    names = list(layers)
    shown = set()
    for n, name in enumerate(names):
        painted = layers[name][..., 3] > 0
        for above in names[n + 1 :]:
            painted &= layers[above][..., 3] == 0
        if painted.any():
            shown.add(name)
    return shown


@pytest.fixture(scope="module")
def nouns(tmp_path_factory):
    """(labels, features, hold-out evaluation) of the 1,000 Nouns."""
    collection = Nouns()
    ids = range(N_NOUNS)
    features = _features([render_noun(noun_seed(i)) for i in ids], tmp_path_factory.mktemp("nouns"))
    labels = _labels("nouns", [f"Noun {i}" for i in ids], [collection.metadata(i)["attributes"] for i in ids])
    return labels, features, evaluate_holdout("nouns", labels, features, seed=0)


def test_punk_type_meets_the_goal(tmp_path):
    collection = CryptoPunks()
    ids = range(N_PUNKS)
    features = _features([collection.tile(i) for i in ids], tmp_path)
    labels = _labels("cryptopunks", [f"CryptoPunk #{i}" for i in ids], [collection.metadata(i)["attributes"] for i in ids])
    rows = {r["method"]: r for r in evaluate_holdout("cryptopunks", labels, features, seed=0).to_pylist() if r["trait_type"] == "Type"}
    chosen = next(r for r in rows.values() if r["chosen"])
    assert chosen["top1"] >= GOAL, rows
    assert chosen["ece_calibrated"] <= 0.05, chosen


def test_each_nouns_layer_meets_the_goal_where_it_shows(nouns):
    labels, features, evaluation = nouns
    choices = chosen_methods(evaluation)
    by_type = {(r["trait_type"], r["method"]): r for r in evaluation.to_pylist()}
    assert set(choices) == {"head", "glasses", "accessory", "body", "background"}
    for trait in labels.types:
        method = choices[trait.trait_type].method
        test, _, methods = holdout_probabilities(labels, features, trait, 0.2, 0, wanted=method)
        correct = methods[method][0].argmax(1) == trait.labels[test]
        shows = np.array([trait.trait_type in _visible_layers(int(labels.token_ids[i])) for i in test])
        assert correct[shows].mean() >= GOAL, (trait.trait_type, correct[shows].mean(), shows.mean())
        if trait.trait_type != "body":  # the others show on (almost) every Noun: the goal holds on all
            assert correct.mean() >= GOAL, (trait.trait_type, correct.mean())
        else:  # every visible body is read; the misses are the hidden ones
            assert correct.mean() >= shows.mean() - 0.02, (correct.mean(), shows.mean())
        assert by_type[(trait.trait_type, method)]["top1"] == pytest.approx(correct.mean())


def test_templates_beat_knn_on_rare_accessories(nouns):
    """The accessory is where kNN misses most (values seen on 1-4 labelled Nouns): the templates,
    learnt per value with the other layers explained away, read it better and are better calibrated."""
    _, _, evaluation = nouns
    rows = {r["method"]: r for r in evaluation.to_pylist() if r["trait_type"] == "accessory"}
    assert rows["template"]["top1"] > rows["knn"]["top1"] + 0.03, rows
    assert rows["template"]["ece"] < rows["knn"]["ece"], rows


def test_calibration_lowers_the_error_of_the_over_confident_pool(nouns):
    """kNN x templates is over-confident on the accessory (two confident votes multiplied): the
    temperature fitted on the held-out fold lowers its cross-fitted calibration error."""
    _, _, evaluation = nouns
    pooled = next(r for r in evaluation.to_pylist() if r["trait_type"] == "accessory" and r["method"] == "knn_template")
    assert pooled["calibration_temperature"] > 1
    assert pooled["ece_calibrated"] < pooled["ece"] - 0.02, pooled
