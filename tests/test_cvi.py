"""CVI (NFT1000 eq. 1): the streaming closed form against the N x N oracle, edge cases, the alpha fit."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from threadpoolctl import threadpool_info, threadpool_limits

from nft_pipeline.cvi import (
    CviResult,
    FeatureMoments,
    cvi,
    cvi_from_moments,
    cvi_naive,
    feature_moments,
    fit_alpha,
    jensen_shannon,
    plot_cvi_vs_top1,
    plot_jsd_curve,
)
from nft_pipeline.train.embed import embed_examples
from nft_pipeline.train.model import build_tiny_clip
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs
from tests.tiny_model import TINY

RTOL = 1e-6  # relative only (abs=0 below): near-duplicate collections have terms far below 1e-12
TERMS = ("cvi", "var_ii", "var_tt", "var_ti")


def assert_same_cvi(result: CviResult, expected: CviResult, rel: float = RTOL) -> None:
    for term in TERMS:
        assert getattr(result, term) == pytest.approx(getattr(expected, term), rel=rel, abs=0), term
    assert (result.n_pairs, result.alpha) == (expected.n_pairs, expected.alpha)


def raw_features(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Gaussian rows at scales from 0.1 to 10, so normalisation inside `cvi` is exercised."""
    return rng.standard_normal((n, dim)) * rng.uniform(0.1, 10.0, size=(n, 1))


def collection_features(
    rng: np.random.Generator, n: int, dim: int, spread: float, n_traits: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """NFT-like pairs: every image near one collection direction, shifted by one of a few trait
    directions, plus noise; captions near a different direction (CLIP's modality gap), sharing
    the image's trait. `spread` sets how alike the pairs are (0.001: near-duplicates)."""
    collection = rng.standard_normal(dim)
    caption_offset = rng.standard_normal(dim)
    traits = rng.standard_normal((n_traits, dim)) * 0.3
    trait_of_pair = rng.integers(0, n_traits, n)
    images = collection + spread * (traits[trait_of_pair] + rng.standard_normal((n, dim)))
    texts = collection + caption_offset + spread * (traits[trait_of_pair] + rng.standard_normal((n, dim)))
    return images.astype(np.float32), texts.astype(np.float32)


@pytest.mark.parametrize(
    ("n", "dim", "alpha"),
    [(2, 3, 0.7), (37, 5, 0.0), (200, 64, 1.0), (513, 32, 0.3), (60, 300, 0.7)],
)
def test_closed_form_matches_naive_on_random_features(n: int, dim: int, alpha: float) -> None:
    rng = np.random.default_rng(n * 1000 + dim)
    images, texts = raw_features(rng, n, dim), raw_features(rng, n, dim)
    assert_same_cvi(cvi(images, texts, alpha=alpha, block_rows=64), cvi_naive(images, texts, alpha=alpha))


@pytest.mark.parametrize("spread", [1.0, 0.3, 0.03, 0.001, 0.0001])
def test_closed_form_matches_naive_on_collection_like_features(spread: float) -> None:
    """Down to near-duplicates (cosine 0.99999998), where only second-order deviations carry the variance."""
    images, texts = collection_features(np.random.default_rng(7), 1200, 128, spread)
    assert_same_cvi(cvi(images, texts, block_rows=500), cvi_naive(images, texts))


def test_closed_form_matches_naive_on_real_collection_features(tmp_path) -> None:
    """Features of real punks and Nouns and their captions from the tiny CLIP, as `cvi_report` embeds
    them: untrained, so every pair is nearly alike (the hard case for the closed form), then pooled."""
    punks, _ = punks_inputs(range(300), tmp_path / "punks")
    nouns, _ = nouns_inputs(range(120), tmp_path / "nouns")
    bundle = build_tiny_clip(TINY)
    embedded = {
        name: embed_examples(bundle, examples, tmp_path / "embedded" / name, TINY)
        for name, examples in (("cryptopunks", punks), ("nouns", nouns))
    }
    for images, texts in embedded.values():
        result = cvi(images.numpy(), texts.numpy(), block_rows=128)
        assert_same_cvi(result, cvi_naive(images.numpy(), texts.numpy()))
        assert 0 < result.cvi < 0.05  # untrained towers: alike pairs, a low CVI
    pooled = [torch.cat([embedded["cryptopunks"][i], embedded["nouns"][i]]).numpy() for i in (0, 1)]
    assert_same_cvi(cvi(*pooled, block_rows=128), cvi_naive(*pooled))


def test_more_alike_pairs_have_lower_cvi() -> None:
    """The paper's reading of the index: NFT-like (alike) collections score below diverse ones."""
    rng = np.random.default_rng(3)
    alike = cvi(*collection_features(rng, 500, 64, spread=0.3))
    diverse = cvi(*collection_features(rng, 500, 64, spread=3.0))
    assert 0 < alike.cvi < diverse.cvi


def test_single_pair_has_zero_cvi() -> None:
    rng = np.random.default_rng(4)
    result = cvi(rng.standard_normal((1, 8)), rng.standard_normal((1, 8)))
    assert (result.cvi, result.var_ii, result.var_tt, result.var_ti, result.n_pairs) == (0.0, 0.0, 0.0, 0.0, 1)


def test_identical_pairs_have_zero_variance() -> None:
    """I == T with every row the same direction (at different lengths): nothing varies."""
    rng = np.random.default_rng(5)
    direction = rng.standard_normal(32)
    features = direction * rng.uniform(0.5, 2.0, size=(300, 1))
    for result in (cvi(features, features, block_rows=64), cvi_naive(features, features)):
        for term in TERMS:
            assert getattr(result, term) == pytest.approx(0.0, abs=1e-20), term


def test_identical_images_leave_only_text_variance() -> None:
    rng = np.random.default_rng(6)
    images = np.tile(rng.standard_normal(16), (250, 1))
    texts = raw_features(rng, 250, 16)
    result = cvi(images, texts, block_rows=64)
    assert result.var_ii == pytest.approx(0.0, abs=1e-20)
    assert result.var_ti == pytest.approx(0.0, abs=1e-20)
    assert result.var_tt == pytest.approx(cvi_naive(images, texts).var_tt, rel=RTOL, abs=0)
    assert result.var_tt > 1.0


def test_texts_equal_to_images_make_the_three_terms_equal() -> None:
    """With T == I all three similarity matrices are S_II, so eq. 1 reduces to var_ii / N."""
    features = raw_features(np.random.default_rng(8), 400, 24)
    result = cvi(features, features, block_rows=64)
    assert result.var_tt == pytest.approx(result.var_ii, rel=1e-12, abs=0)
    assert result.var_ti == pytest.approx(result.var_ii, rel=1e-12, abs=0)
    assert result.cvi == pytest.approx(result.var_ii / 400, rel=1e-12, abs=0)


def test_block_size_and_streaming_do_not_change_the_answer() -> None:
    rng = np.random.default_rng(9)
    images, texts = collection_features(rng, 1000, 48, spread=0.1)
    whole = cvi(images, texts, block_rows=len(images))
    for block_rows in (1, 7, 333):
        assert_same_cvi(cvi(images, texts, block_rows=block_rows), whole, rel=1e-10)

    image_moments, text_moments = FeatureMoments.empty(48), FeatureMoments.empty(48)
    for start, stop in [(0, 5), (5, 5), (5, 600), (600, 1000)]:  # uneven blocks, one of them empty
        image_moments.add(images[start:stop])
        text_moments.add(texts[start:stop])
    assert_same_cvi(cvi_from_moments(image_moments, text_moments), whole, rel=1e-10)
    assert image_moments.n == feature_moments(images).n == 1000


def test_concurrent_streams_equal_one_stream_and_restore_blas_threads() -> None:
    """`cvi` gathers images and texts in two threads with fewer BLAS threads: same answer, and the
    process's BLAS thread count is what it was once the call returns (also after an error)."""
    images, texts = collection_features(np.random.default_rng(14), 3000, 64, spread=0.01)
    blas_threads = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas_threads, "numpy's BLAS is not visible to threadpoolctl"
    one_stream = cvi_from_moments(feature_moments(images, 700), feature_moments(texts, 700))
    assert_same_cvi(cvi(images, texts, block_rows=700), one_stream, rel=1e-12)
    with pytest.raises(ValueError, match="zero or not finite"):
        cvi(images, np.zeros_like(texts))
    assert [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"] == blas_threads
    with threadpool_limits(limits=1, user_api="blas"):  # a caller holding BLAS to one thread keeps it so
        assert_same_cvi(cvi(images, texts, block_rows=700), one_stream, rel=1e-12)
        assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {1}


def test_float16_input() -> None:
    images, texts = collection_features(np.random.default_rng(10), 500, 64, spread=0.5)
    images16, texts16 = images.astype(np.float16), texts.astype(np.float16)
    assert_same_cvi(cvi(images16, texts16), cvi_naive(images16.astype(np.float64), texts16.astype(np.float64)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_torch_tensors_give_the_numpy_answer(dtype: torch.dtype) -> None:
    images, texts = collection_features(np.random.default_rng(11), 300, 32, spread=0.5)
    image_tensor = torch.from_numpy(images).to(dtype).requires_grad_(True)
    text_tensor = torch.from_numpy(texts).to(dtype)
    before = text_tensor.clone()
    result = cvi(image_tensor, text_tensor, block_rows=100)
    expected = cvi_naive(image_tensor.detach().double().numpy(), text_tensor.double().numpy())
    assert_same_cvi(result, expected)
    assert torch.equal(text_tensor, before)  # normalisation works on a copy, even for float64


def test_numpy_input_is_not_modified() -> None:
    images, texts = collection_features(np.random.default_rng(12), 100, 16, spread=0.5)
    images64, copy = images.astype(np.float64), images.astype(np.float64)
    cvi(images64, texts)
    cvi_naive(images64, texts)
    np.testing.assert_array_equal(images64, copy)


def test_refuses_features_without_pairs_or_direction() -> None:
    rng = np.random.default_rng(13)
    images, texts = rng.standard_normal((10, 4)), rng.standard_normal((10, 4))
    zero_row, nan_row = images.copy(), images.copy()
    zero_row[3] = 0.0
    nan_row[7, 2] = np.nan
    with pytest.raises(ValueError, match="pairs"):
        cvi(images, texts[:9])
    with pytest.raises(ValueError, match="pairs"):
        cvi_naive(images, texts[:9])
    with pytest.raises(ValueError, match="first at row 3"):
        cvi(zero_row, texts)
    with pytest.raises(ValueError, match="first at row 7"):
        cvi(images, nan_row, block_rows=4)  # counted across blocks
    with pytest.raises(ValueError, match="first at row 7"):
        cvi_naive(images, nan_row)
    with pytest.raises(ValueError, match="dimension"):
        cvi(images, rng.standard_normal((10, 5)))
    with pytest.raises(ValueError, match="2-D"):
        cvi(images[0], texts[0])
    with pytest.raises(ValueError, match="block_rows"):
        cvi(images, texts, block_rows=0)
    with pytest.raises(ValueError, match="no pairs"):
        cvi(images[:0], texts[:0])
    with pytest.raises(ValueError, match="no pairs"):
        cvi_naive(images[:0], texts[:0])
    with pytest.raises(ValueError, match="no rows"):
        _ = FeatureMoments.empty(4).covariance
    with pytest.raises(ValueError, match="alpha"):
        cvi(images, texts, alpha=1.5)


def test_jensen_shannon_known_value_and_scale_invariance() -> None:
    # p = [1, 0], q = [1/2, 1/2]: mixture [3/4, 1/4], JSD = (ln(4/3) + ln(4/3) / 2) / 2 = 3/4 ln(4/3)
    assert jensen_shannon([1, 0], [0.5, 0.5]) == pytest.approx(0.75 * math.log(4 / 3), rel=1e-12, abs=0)
    assert jensen_shannon([2, 0], [7, 7]) == pytest.approx(0.75 * math.log(4 / 3), rel=1e-12, abs=0)


def test_jensen_shannon_properties() -> None:
    rng = np.random.default_rng(14)
    for _ in range(200):
        p, q = rng.random(6), rng.random(6)
        p[rng.random(6) < 0.3] = 0.0  # zeros in either distribution
        q[rng.random(6) < 0.3] = 0.0
        p[0] += 0.1
        q[1] += 0.1
        divergence = jensen_shannon(p, q)
        assert 0.0 < divergence <= math.log(2) + 1e-12
        assert jensen_shannon(q, p) == pytest.approx(divergence, rel=1e-12, abs=0)
        assert jensen_shannon(p, 3.0 * p) == pytest.approx(0.0, abs=1e-15)
    assert jensen_shannon([1, 2, 0, 0], [0, 0, 5, 1]) == pytest.approx(math.log(2), rel=1e-12, abs=0)


@pytest.mark.parametrize(
    ("p", "q"), [([1, -1], [1, 1]), ([0, 0], [1, 1]), ([1, 2, 3], [1, 2]), ([np.nan, 1], [1, 1]), ([], [])]
)
def test_jensen_shannon_refuses_non_distributions(p: list[float], q: list[float]) -> None:
    with pytest.raises(ValueError):
        jensen_shannon(p, q)


def planted_collections(planted_alpha: float) -> tuple[dict[str, CviResult], dict[str, float]]:
    """Collections whose top-k accuracies are proportional to their CVI at `planted_alpha`.

    Image and caption spreads vary independently across collections, so the normalised CVI
    vector changes with alpha and only the planted alpha reproduces the accuracies. The terms
    are stored at the paper's alpha; `fit_alpha` must re-weight them.
    """
    rng = np.random.default_rng(15)
    terms, topk = {}, {}
    for index in range(8):
        images = collection_features(rng, 200, 24, spread=rng.uniform(0.2, 1.5))[0]
        texts = collection_features(rng, 200, 24, spread=rng.uniform(0.2, 1.5))[1]
        name = f"collection-{index}"
        terms[name] = cvi(images, texts)
        topk[name] = 50.0 * cvi(images, texts, alpha=planted_alpha).cvi
    return terms, topk


@pytest.mark.parametrize("planted_alpha", [0.7, 0.25])
def test_fit_alpha_recovers_a_planted_alpha(planted_alpha: float) -> None:
    terms, topk = planted_collections(planted_alpha)
    assert all(result.alpha == 0.7 for result in terms.values())
    fit = fit_alpha(terms, topk)
    assert fit.alpha == pytest.approx(planted_alpha, abs=1e-9)
    assert fit.divergence < 1e-12
    best = int(np.argmin(fit.curve))
    assert len(fit.grid) == len(fit.curve) == 101 and fit.cvi.shape == (101, 8)
    assert np.all(np.delete(fit.curve, best) > 1e-9)
    at_best = fit.cvi[best] / fit.cvi[best].sum()
    expected = np.array([topk[name] for name in fit.collections])
    np.testing.assert_allclose(at_best, expected / expected.sum(), rtol=1e-9)


def test_fit_alpha_on_a_custom_grid_and_refusals() -> None:
    terms, topk = planted_collections(0.25)
    assert fit_alpha(terms, topk, grid=[0.9, 0.3, 0.6]).alpha == 0.3
    with pytest.raises(ValueError, match="same collections"):
        fit_alpha(terms, {**topk, "extra": 0.5})
    with pytest.raises(ValueError, match="two collections"):
        fit_alpha({"a": terms["collection-0"]}, {"a": 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_alpha(terms, topk, grid=[0.5, 1.5])


def assert_png(data: bytes) -> None:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (700, 450)


def test_plots_are_pngs() -> None:
    terms, topk = planted_collections(0.7)
    rows = [{"collection": name, "cvi": terms[name].cvi, "top1": topk[name]} for name in terms]
    assert_png(plot_cvi_vs_top1(rows))
    assert_png(plot_jsd_curve(fit_alpha(terms, topk)))
    with pytest.raises(ValueError, match="no collections"):
        plot_cvi_vs_top1([])
