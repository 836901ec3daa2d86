"""The Comprehensive Variance Index of NFT1000 (eq. 1) and the fit of its alpha (Fig. 12).

For N image-text pairs with L2-normalised image features I and text features T (rows), the paper
builds the similarity matrices S_II = I I^T, S_TT = T T^T, S_TI = T I^T and defines

    CVI = 1/(2N) * (alpha * sum_i var(S_II[i]) + (1 - alpha) * sum_i var(S_TT[i]) + sum_i var(S_TI[i]))

with alpha = 0.7 and var the population variance of a row. A low CVI means the pairs are alike,
so retrieval among them is hard: the paper reports 0.0003-0.0011 for NFT collections against
0.0034-0.0044 for COCO categories (Table 6, CLIP ViT-L features).

The N x N matrices are never needed. Over j, row i of X Y^T has mean x_i . mu_Y and population
variance x_i^T C_Y x_i, C_Y being the population covariance of Y's rows. Summed over i that is

    sum_i x_i^T C_Y x_i = N * (<C_X, C_Y> + mu_X^T C_Y mu_X)        (<.,.> the Frobenius product)

so each modality's mean and covariance, gathered in one streaming pass over its rows in
O(N M^2) time and O(M^2 + block) memory, give all three terms exactly: `cvi` does this, `cvi_naive`
builds the matrices and is the test oracle.

Numerics: everything is float64, whatever the input dtype. Each block of rows is normalised,
then centred on its own mean before its scatter is taken, and blocks merge with Chan, Golub and
LeVeque's pairwise update. Centring matters: rows on the unit sphere deviate from their mean
direction only to second order, so for near-duplicate features (cosine 0.999+) the variance along
that direction is ~|deviation|^4 and an uncentred Gram matrix would lose it to cancellation.
(Float32 block products lose up to 1e-4 relative on such features, and once corrected for
that they showed no clear speed gain on the 2-core machine this was measured on.)

Speed: `cvi` gathers the two modalities' moments concurrently, each stream in its own thread with
half the BLAS threads. A block's normalisation and centring are single-threaded numpy passes, so
one stream leaves a core idle between products; two streams keep both busy (1,000,000 pairs of
512-d: 8.0 s against 10.9 s in one stream, the same result to the bit; docs/benchmarks.md).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from nft_pipeline.cpus import usable_cpus

if TYPE_CHECKING:
    from typing import TypeAlias

    import torch
    from matplotlib.figure import Figure

    # (N, dim) feature rows: a numpy array of any float dtype, or a torch tensor on any device.
    FeatureMatrix: TypeAlias = np.ndarray | torch.Tensor

PAPER_ALPHA = 0.7
# Rows per block: a float64 block of 512-d features is 32 MB, and the O(M^2) merge per block is
# small next to the block's O(rows M^2) product.
DEFAULT_BLOCK_ROWS = 8192
ALPHA_GRID = np.arange(101) / 100  # 0, 0.01, ..., 1, each the double nearest k/100 (0.7 == 0.7)
ALPHA_GRID.flags.writeable = False


@dataclass(frozen=True)
class CviResult:
    """Eq. 1 and its three terms, kept so the index can be re-weighted for another alpha.

    `var_ii`, `var_tt` and `var_ti` are SUMS over the N rows of the population variance of each
    row of S_II, S_TT and S_TI (S_TI = T I^T: a text's similarities to all images), exactly the
    sums in eq. 1, so `cvi = (alpha * var_ii + (1 - alpha) * var_tt + var_ti) / (2 * n_pairs)`.
    """

    cvi: float
    var_ii: float
    var_tt: float
    var_ti: float
    n_pairs: int
    alpha: float


@dataclass
class FeatureMoments:
    """Count, mean and scatter (sum of outer products of deviations) of L2-normalised rows.

    All eq. 1 needs from a modality. Built block by block with `add`, so features can stream from
    storage without ever being in memory at once.
    """

    n: int
    mean: np.ndarray  # (dim,) float64
    scatter: np.ndarray  # (dim, dim) float64

    @classmethod
    def empty(cls, dim: int) -> FeatureMoments:
        return cls(n=0, mean=np.zeros(dim), scatter=np.zeros((dim, dim)))

    @property
    def covariance(self) -> np.ndarray:
        """The population covariance of the rows seen so far."""
        if self.n == 0:
            raise ValueError("no rows added")
        return self.scatter / self.n

    def add(self, rows: FeatureMatrix) -> None:
        """Fold a block of raw feature rows (normalised here) into the moments."""
        unit = _unit_rows(rows, first_row=self.n)
        if unit.shape[1] != len(self.mean):
            raise ValueError(f"rows have dimension {unit.shape[1]}, expected {len(self.mean)}")
        count = len(unit)
        if count == 0:
            return
        block_mean = unit.mean(axis=0)
        unit -= block_mean
        block_scatter = unit.T @ unit  # one symmetric BLAS product (syrk): half a general one
        total = self.n + count
        delta = block_mean - self.mean
        self.scatter += block_scatter + np.outer(delta, delta) * (self.n * count / total)
        self.mean += delta * (count / total)
        self.n = total


def feature_moments(features: FeatureMatrix, block_rows: int = DEFAULT_BLOCK_ROWS) -> FeatureMoments:
    """The moments of a feature matrix (numpy array of any float dtype, or torch tensor, (N, dim)),
    read `block_rows` rows at a time so memory stays bounded whatever N is."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be positive, got {block_rows}")
    if not _is_torch_tensor(features):
        features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D (rows, dim) matrix, got shape {tuple(features.shape)}")
    moments = FeatureMoments.empty(int(features.shape[1]))
    for start in range(0, int(features.shape[0]), block_rows):
        moments.add(features[start : start + block_rows])
    return moments


def cvi_from_moments(images: FeatureMoments, texts: FeatureMoments, alpha: float = PAPER_ALPHA) -> CviResult:
    """Eq. 1 from each modality's moments, through sum_i x_i^T C_Y x_i = N (<C_X, C_Y> + mu_X^T C_Y mu_X)."""
    if images.n != texts.n:
        raise ValueError(f"{images.n} image rows but {texts.n} text rows: eq. 1 needs pairs")
    if len(images.mean) != len(texts.mean):
        raise ValueError(f"image dimension {len(images.mean)} != text dimension {len(texts.mean)}")
    n = images.n
    if n == 0:
        raise ValueError("no pairs")
    cov_i, cov_t = images.covariance, texts.covariance
    var_ii = n * (float(np.vdot(cov_i, cov_i)) + float(images.mean @ cov_i @ images.mean))
    var_tt = n * (float(np.vdot(cov_t, cov_t)) + float(texts.mean @ cov_t @ texts.mean))
    var_ti = n * (float(np.vdot(cov_t, cov_i)) + float(texts.mean @ cov_i @ texts.mean))
    return _result(var_ii, var_tt, var_ti, n, alpha)


def cvi(
    image_features: FeatureMatrix,
    text_features: FeatureMatrix,
    alpha: float = PAPER_ALPHA,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> CviResult:
    """The CVI of N pairs (row i of each matrix is pair i), in O(N M^2) time and O(M^2 + block) memory.

    Rows are L2-normalised here, as the paper's CLIP embeddings are, so raw model outputs can be
    passed; float16, bfloat16 and torch tensors (any device) are accepted and widened per block.
    Images and texts stream concurrently (two threads, each with half of numpy's BLAS threads for
    the duration of the call: the limit is process-wide, as BLAS thread counts are), unless there
    is one core or BLAS is already held to one thread (then one after the other).
    """
    blas = min((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=1)
    blas_threads = min(blas, usable_cpus())
    if blas_threads < 2:  # one core, or BLAS held to one thread: nothing to overlap
        return cvi_from_moments(
            feature_moments(image_features, block_rows), feature_moments(text_features, block_rows), alpha
        )
    with threadpool_limits(limits=blas_threads // 2, user_api="blas"), ThreadPoolExecutor(2) as pool:
        streams = [pool.submit(feature_moments, features, block_rows) for features in (image_features, text_features)]
        images, texts = (stream.result() for stream in streams)
    return cvi_from_moments(images, texts, alpha)


def cvi_naive(image_features: FeatureMatrix, text_features: FeatureMatrix, alpha: float = PAPER_ALPHA) -> CviResult:
    """Eq. 1 verbatim: the three N x N similarity matrices and their row variances, in float64.

    O(N^2) memory (two N x N float64 arrays at a time): the oracle for `cvi` and its benchmark baseline.
    """
    images, texts = _unit_rows(image_features), _unit_rows(text_features)
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} image rows but {len(texts)} text rows: eq. 1 needs pairs")
    if len(images) == 0:
        raise ValueError("no pairs")
    var_ii = float(np.var(images @ images.T, axis=1).sum())
    var_tt = float(np.var(texts @ texts.T, axis=1).sum())
    var_ti = float(np.var(texts @ images.T, axis=1).sum())
    return _result(var_ii, var_tt, var_ti, len(images), alpha)


def _eq1(alpha: Any, var_ii: Any, var_tt: Any, var_ti: Any, n_pairs: Any) -> Any:
    """Eq. 1 from the three row-variance sums; broadcasts, so the alpha sweep re-weights stored sums."""
    return (alpha * var_ii + (1.0 - alpha) * var_tt + var_ti) / (2.0 * n_pairs)


def _result(var_ii: float, var_tt: float, var_ti: float, n_pairs: int, alpha: float) -> CviResult:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha weighs S_II against S_TT and must lie in [0, 1], got {alpha}")
    return CviResult(
        cvi=float(_eq1(alpha, var_ii, var_tt, var_ti, n_pairs)),
        var_ii=var_ii,
        var_tt=var_tt,
        var_ti=var_ti,
        n_pairs=n_pairs,
        alpha=alpha,
    )


def _is_torch_tensor(value: object) -> bool:
    """True for a torch tensor, without importing torch (if torch is not loaded, it cannot be one)."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(value, torch_module.Tensor)


def _unit_rows(rows: FeatureMatrix, first_row: int = 0) -> np.ndarray:
    """A fresh float64 copy of the rows, each scaled to unit length.

    Torch tensors are detached, moved to the CPU and widened by torch itself, which also covers
    bfloat16, a dtype numpy lacks. Zero or non-finite rows are refused: they have no direction
    (`first_row`, the index of `rows[0]` in the whole matrix, makes the error point at the row).
    """
    if _is_torch_tensor(rows):
        import torch

        unit = rows.detach().to(device="cpu", dtype=torch.float64, copy=True).numpy()
    else:
        unit = np.array(rows, dtype=np.float64)
    if unit.ndim != 2:
        raise ValueError(f"features must be a 2-D (rows, dim) matrix, got shape {unit.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", unit, unit))
    bad = ~(np.isfinite(norms) & (norms > 0))
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} feature rows are zero or not finite, first at row {first_row + int(np.argmax(bad))}"
        )
    unit *= (1.0 / norms)[:, None]
    return unit


def _distribution(values: Any, name: str) -> np.ndarray:
    """Non-negative weights scaled to sum to 1 (the paper L1-normalises CVI and top-k across collections)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    total = array.sum()
    if total <= 0:
        raise ValueError(f"{name} sums to zero: not a distribution")
    return array / total


def _kl_to_mixture(p: np.ndarray, mixture: np.ndarray) -> float:
    """KL(p || mixture), with 0 log 0 = 0; the mixture is positive wherever p is."""
    support = p > 0
    return float(np.sum(p[support] * np.log(p[support] / mixture[support])))


def jensen_shannon(p: Any, q: Any) -> float:
    """Jensen-Shannon divergence of two weight vectors after L1 normalisation, in nats.

    Symmetric, 0 only when the normalised vectors are equal, at most ln 2 (disjoint supports);
    zeros are fine.
    """
    p, q = _distribution(p, "p"), _distribution(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p has {len(p)} entries, q has {len(q)}")
    mixture = (p + q) / 2.0
    return (_kl_to_mixture(p, mixture) + _kl_to_mixture(q, mixture)) / 2.0


@dataclass(frozen=True)
class AlphaFit:
    """The alpha whose per-collection CVIs are distributed most like the top-k accuracies.

    `curve[k]` is the Jensen-Shannon divergence at `grid[k]`; `cvi[k]` holds the collections' CVIs
    at `grid[k]`, in the order of `collections`.
    """

    alpha: float
    divergence: float
    grid: np.ndarray
    curve: np.ndarray
    collections: tuple[str, ...]
    cvi: np.ndarray


def fit_alpha(
    per_collection_terms: Mapping[str, CviResult],
    per_collection_topk: Mapping[str, float],
    grid: Sequence[float] | np.ndarray = ALPHA_GRID,
) -> AlphaFit:
    """Choose alpha as the paper does (Fig. 12): minimise JSD(L1(CVI per collection), L1(top-k)).

    CVI is re-weighted from each collection's stored variance sums, so no features are read again.
    Direction: a lower CVI means more alike pairs and harder retrieval, so a LOWER top-k accuracy;
    CVI and top-k rise together and their normalised vectors are compared directly, not inverted.
    """
    if set(per_collection_terms) != set(per_collection_topk):
        raise ValueError("per-collection terms and top-k accuracies must name the same collections")
    if len(per_collection_terms) < 2:
        raise ValueError("fitting alpha needs at least two collections (one normalises to [1] whatever alpha)")
    alphas = np.asarray(grid, dtype=np.float64)
    if alphas.ndim != 1 or len(alphas) == 0 or alphas.min() < 0 or alphas.max() > 1:
        raise ValueError("grid must be a non-empty 1-D sequence of alphas in [0, 1]")
    collections = tuple(per_collection_terms)
    terms = [per_collection_terms[name] for name in collections]
    topk = [per_collection_topk[name] for name in collections]
    cvis = _eq1(
        alphas[:, None],
        np.array([t.var_ii for t in terms]),
        np.array([t.var_tt for t in terms]),
        np.array([t.var_ti for t in terms]),
        np.array([t.n_pairs for t in terms], dtype=np.float64),
    )
    curve = np.array([jensen_shannon(row, topk) for row in cvis])
    best = int(np.argmin(curve))
    return AlphaFit(
        alpha=float(alphas[best]),
        divergence=float(curve[best]),
        grid=alphas,
        curve=curve,
        collections=collections,
        cvi=cvis,
    )


class CviTop1Row(TypedDict):
    """One collection's point in `plot_cvi_vs_top1`."""

    collection: str
    cvi: float
    top1: float


def plot_cvi_vs_top1(rows: Sequence[CviTop1Row]) -> bytes:
    """PNG of top-1 accuracy against CVI, one labelled point per collection (cf. Table 6)."""
    if not rows:
        raise ValueError("no collections to plot")
    figure, axes = _figure()
    axes.scatter([r["cvi"] for r in rows], [r["top1"] for r in rows], color="tab:blue")
    for row in rows:
        axes.annotate(
            row["collection"], (row["cvi"], row["top1"]), textcoords="offset points", xytext=(4, 4), fontsize=8
        )
    axes.set_xlabel("CVI (eq. 1; lower = more alike pairs)")
    axes.set_ylabel("top-1 accuracy")
    axes.set_title("Retrieval difficulty against CVI, per collection")
    axes.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
    axes.grid(alpha=0.3)
    return _png(figure)


def plot_jsd_curve(fit: AlphaFit) -> bytes:
    """PNG of the JSD between normalised CVI and top-k against alpha, the minimum marked (cf. Fig. 12)."""
    figure, axes = _figure()
    axes.plot(fit.grid, fit.curve, color="tab:blue")
    axes.axvline(
        fit.alpha, color="tab:red", linestyle="--", label=f"alpha = {fit.alpha:.2f}, JSD = {fit.divergence:.2e}"
    )
    axes.set_xlabel("alpha")
    axes.set_ylabel("JSD(CVI, top-k) [nats]")
    axes.set_title(f"Choice of alpha over {len(fit.collections)} collections")
    axes.legend()
    axes.grid(alpha=0.3)
    return _png(figure)


def _figure() -> tuple[Figure, Any]:
    """A figure on matplotlib's Agg canvas, imported only when plotting and without pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
