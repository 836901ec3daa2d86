"""Separating a collection's images into trait components (NFT1000), vectorised over the whole stack.

NFT images are permutations of trait layers, so a trait's component is what the images that share
the trait have in common. Two methods:

`plain`, the paper's procedure: take `images_per_round` images that share the trait, keep the
pixels where every one equals the first (the template), repeat for `rounds` rounds and assemble
the pieces by union (or intersection). It never looks at images without the trait, so whatever the
round's images share by chance (the same background, a common outline) joins the component, and a
part hidden in one image of every round (a body under accessories) cannot be found.

`contrast` (the default) uses every image that shares the trait at once, pixel by pixel:

1. The candidate colour of a pixel is the most common non-transparent colour among the sharing
   images, and its share `r` the fraction of them that show it (a part hidden by a higher layer in
   some tokens still wins where it is visible).
2. Contrast: the colour must be more frequent among the sharing images than among the others, by
   at least `evidence` nats (n * KL(r || rate among the others): a Chernoff bound on the chance
   that a colour this frequent is a coincidence). A colour every token has (a shared outline)
   gives no evidence for any single trait.
3. Explained by another trait: the colour is dropped when another trait accounts for it better.
   - A single trait u: the sharing images without u (one or more) rarely show the colour (at most
     `explain_ratio` times as often as those with u), tokens with u but without this trait show
     it at least as often as this trait's tokens without u, and clearly (2x, with `evidence`) more
     often than tokens with neither (or, when u never occurs without this trait, no sharing image
     without u shows the colour, and there are at least two such images). This is the background
     seen through a head's transparent pixels: among the head's tokens the colour follows the
     background trait, not the head.
   - A trait type T whose values are exclusive (one per token): the colour's rate expected from
     the T values of the sharing tokens (each value's rate among its tokens without this trait)
     is clearly above the rate among all the others (1.25x, with `evidence` on those values'
     tokens), and this trait's own rate is at most 1 / `explain_ratio` times that expectation.
     This is a correlated trait: every Fedora punk is male, so the male outline is frequent among
     Fedora tokens (more than among other males, whose hair often covers it), but the male Types
     explain it. It also catches a small trait whose few tokens all share, by chance, one value
     of another trait (all five tokens on the same background).

`agreement` is, for both methods, the mean over the mask's pixels of the fraction of sharing
images that show the component's colour there: 1.0 for a part seen whole in every token, lower for
a part often hidden (and for a mask that caught something by chance).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nft_pipeline.components.grid import GRID_SAMPLE, PixelGrid, detect_grid, to_native

Trait = tuple[str, str]  # (trait_type, value); an untyped value has trait_type ""
_TRANSPARENT = 0  # packed RGBA of every pixel with alpha 0
_TYPE_LIFT = 1.25  # a trait type explains a colour only if its values predict it this much above the rest


@dataclass(frozen=True)
class ComponentConfig:
    method: Literal["contrast", "plain"] = "contrast"
    images_per_round: int = 4  # also the fewest tokens a trait needs (status too_few_tokens below it)
    rounds: int = 8  # plain only
    combine: Literal["union", "intersection"] = "union"  # plain only: how rounds are assembled
    seed: int = 0  # plain only: the rounds' draws (contrast uses every image and draws nothing)
    evidence: float = 8.0  # nats of evidence a colour needs (contrast)
    explain_ratio: float = 0.3  # see "explained by a single trait" (contrast)
    max_cells: int = 1 << 24  # native pixels x distinct colours the contrast method may tabulate


DEFAULT_CONFIG = ComponentConfig()


@dataclass(frozen=True)
class Component:
    """One trait's component at the art's native resolution, or the status saying why there is none."""

    trait_type: str
    value: str
    n_tokens: int
    status: str  # ok | empty | base_layer | too_few_tokens | too_many_colours
    reason: str | None
    mask: np.ndarray | None  # rows x cols bool
    rgba: np.ndarray | None  # rows x cols x 4: the component's colour on its mask, transparent elsewhere
    agreement: float | None
    rounds: int
    images_per_round: int


@dataclass(frozen=True)
class ComponentSet:
    grid: PixelGrid
    method: str
    n_tokens: int  # tokens whose image took part
    skipped_tokens: int  # images of another size than the collection's, left out
    n_colours: int
    components: list[Component]


@dataclass(frozen=True)
class _Stack:
    """A collection reduced to colour ids and trait indices: what both methods share."""

    ids: np.ndarray  # N x P colour ids (uint8/uint16/int32); id 0 is transparent when `has_transparent`
    palette: np.ndarray  # K packed RGBA (little-endian uint32)
    has_transparent: bool
    traits: list[Trait]
    trait_tokens: list[np.ndarray]  # per trait: its tokens (sorted indices)
    token_traits: list[np.ndarray]  # per token: its traits (indices into `traits`)

    @property
    def n_colours(self) -> int:
        return len(self.palette)


def _kl(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """KL divergence between Bernoulli(q) and Bernoulli(p), elementwise (nats)."""
    q = np.clip(q, 1e-12, 1 - 1e-12)
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))


def encode_colours(native: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """N x rows x cols x 4 uint8 -> (N x P colour ids, packed RGBA palette); alpha-0 pixels are one colour."""
    packed = np.ascontiguousarray(native).view("<u4")[..., 0].reshape(len(native), -1)
    packed = np.where(packed < (1 << 24), np.uint32(_TRANSPARENT), packed)  # alpha is the top byte
    palette, ids = np.unique(packed, return_inverse=True)
    dtype = np.uint8 if len(palette) <= 256 else np.uint16 if len(palette) <= 65536 else np.int32
    return ids.reshape(packed.shape).astype(dtype), palette


def _unpack(palette: np.ndarray) -> np.ndarray:
    return palette.astype("<u4").view(np.uint8).reshape(-1, 4)


def _index_traits(
    token_traits: Sequence[Iterable[tuple[str | None, str | None]]],
) -> tuple[list[Trait], list[np.ndarray], list[np.ndarray]]:
    """Traits in first-seen order, each trait's tokens, each token's traits (duplicates and null values dropped)."""
    index: dict[Trait, int] = {}
    tokens: list[list[int]] = []
    per_token = []
    for token, traits in enumerate(token_traits):
        own = []
        for trait in dict.fromkeys(((trait_type or ""), value) for trait_type, value in traits if value is not None):
            if trait not in index:
                index[trait] = len(tokens)
                tokens.append([])
            tokens[index[trait]].append(token)
            own.append(index[trait])
        per_token.append(np.array(own, dtype=np.int64))
    return list(index), [np.array(t) for t in tokens], per_token


def _trait_rng(seed: int, trait: Trait) -> np.random.Generator:
    """A generator per trait, so a trait's rounds do not depend on which other traits exist."""
    return np.random.default_rng([seed, zlib.crc32("\0".join(trait).encode("utf-8"))])


def _agreement(ids: np.ndarray, tokens: np.ndarray, mask: np.ndarray, colours: np.ndarray) -> float:
    pixels = np.flatnonzero(mask)
    return float((ids[tokens][:, pixels] == colours[pixels]).mean())


class _Contrast:
    """What the contrast method tabulates once per collection.

    `population[p, c]`: tokens showing colour c at pixel p. The per-trait counts of the same are
    kept sparse (only pairs that occur), looked up by `trait_count`.
    """

    def __init__(self, stack: _Stack, config: ComponentConfig):
        self.stack, self.config = stack, config
        pixels, colours = stack.ids.shape[1], stack.n_colours
        self.cells = pixels * colours
        self.offsets = np.arange(pixels, dtype=np.int64) * colours
        self.sizes = np.array([len(tokens) for tokens in stack.trait_tokens])
        keys, counts = [], []
        for i, tokens in enumerate(stack.trait_tokens):
            table = self.table(tokens)
            nonzero = np.flatnonzero(table)
            keys.append(nonzero + i * self.cells)
            counts.append(table[nonzero])
        self.keys = np.concatenate(keys)
        self.counts = np.concatenate(counts)
        self.population = self.table(np.arange(len(stack.ids))).reshape(pixels, colours)
        self.exclusive_types = self._exclusive_types()

    def table(self, tokens: np.ndarray) -> np.ndarray:
        """Dense counts (P * K) of each (pixel, colour) among `tokens`."""
        return np.bincount((self.offsets + self.stack.ids[tokens]).ravel(), minlength=self.cells)

    def trait_count(self, traits: np.ndarray, pixels: np.ndarray, colours: np.ndarray) -> np.ndarray:
        keys = traits * self.cells + self.offsets[pixels] + colours
        found = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[found] == keys, self.counts[found], 0)

    def _exclusive_types(self) -> set[str]:
        """Trait types no token has two values of (Nouns' layers, CryptoPunks' Type; not their Accessory)."""
        seen: dict[str, np.ndarray] = {}
        for (trait_type, _), tokens in zip(self.stack.traits, self.stack.trait_tokens):
            seen.setdefault(trait_type, np.zeros(len(self.stack.ids), dtype=np.int32))[tokens] += 1
        return {trait_type for trait_type, count in seen.items() if count.max() <= 1}

    def mask(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Trait `t`'s (mask, colour id per pixel), both of length P."""
        stack, config = self.stack, self.config
        tokens = stack.trait_tokens[t]
        n, n_all, pixels = len(tokens), len(stack.ids), stack.ids.shape[1]
        table = self.table(tokens).reshape(pixels, stack.n_colours)
        choice = table.copy()
        if stack.has_transparent:
            choice[:, 0] = 0
        colour = choice.argmax(axis=1)
        every = np.arange(pixels)
        shown = table[every, colour]
        share = shown / n
        others = (self.population[every, colour] - shown + 0.5) / (n_all - n + 1)
        mask = (shown >= 2) & (share > others) & (n * _kl(share, others) >= config.evidence)
        candidates = np.flatnonzero(mask)
        if len(candidates):
            mask[
                candidates[self._explained(t, candidates, colour[candidates], share[candidates], others[candidates])]
            ] = False
        return mask, colour

    def _explained(
        self, t: int, candidates: np.ndarray, colours: np.ndarray, share: np.ndarray, others: np.ndarray
    ) -> np.ndarray:
        """Which candidate pixels another trait, or an exclusive trait type, accounts for (see the module doc)."""
        stack, config = self.stack, self.config
        tokens = stack.trait_tokens[t]
        n, n_all = len(tokens), len(stack.ids)
        showing = stack.ids[tokens][:, candidates] == colours  # n x C
        rows = np.concatenate([np.full(len(stack.token_traits[token]), i) for i, token in enumerate(tokens)])
        co, cols = np.unique(np.concatenate([stack.token_traits[token] for token in tokens]), return_inverse=True)
        membership = np.zeros((n, len(co)), dtype=np.float32)
        membership[rows, cols] = 1.0
        membership[:, co == t] = 0.0
        with_u = membership.sum(axis=0)
        without_u = n - with_u
        shown_with = membership.T @ showing.astype(np.float32)  # U x C
        shown_total = showing.sum(axis=0)
        shown_without = shown_total[None, :] - shown_with
        explained = np.zeros(len(candidates), dtype=bool)

        # A single trait u that the colour follows among this trait's tokens.
        rate_with = (shown_with + 0.5) / (with_u[:, None] + 1)
        follows = (
            (without_u[:, None] > 0)
            & (shown_with >= 1)
            & (shown_without <= config.explain_ratio * rate_with * without_u[:, None])
        )
        u, c = np.nonzero(follows)
        if len(u):
            pixel, colour = candidates[c], colours[c]
            u_only = self.sizes[co[u]] - with_u[u]  # tokens with u but not this trait
            u_only_shown = self.trait_count(co[u], pixel, colour) - shown_with[u, c]
            neither = n_all - n - u_only
            rate_u = u_only_shown / np.maximum(u_only, 1)
            rate_neither = (self.population[pixel, colour] - shown_total[c] - u_only_shown + 0.5) / (neither + 1)
            rate_t = shown_without[u, c] / without_u[u]
            better = (
                (u_only > 0)
                & (rate_u >= rate_t)
                & (rate_u >= 2 * rate_neither)
                & (u_only * _kl(rate_u, rate_neither) >= config.evidence)
            )
            # u never occurs without this trait: trust the sharing tokens alone (none without u shows it).
            better |= (u_only == 0) & (shown_without[u, c] == 0) & (without_u[u] >= 2)
            explained[c[better]] = True

        # An exclusive trait type whose values, without this trait, already predict the colour.
        types = np.array([stack.traits[i][0] for i in co])
        for trait_type in self.exclusive_types - {stack.traits[t][0]}:
            values = np.flatnonzero((types == trait_type) & (self.sizes[co] > with_u))
            if len(values) == 0:
                continue
            outside = (self.sizes[co[values]] - with_u[values])[:, None]
            counted = self.trait_count(co[values][:, None], candidates[None, :], colours[None, :])
            rates = (counted - shown_with[values]) / outside
            covered = with_u[values].sum()
            expected = (with_u[values] @ rates + (n - covered) * others) / n
            # Measured on the values' own tokens (those without this trait), hence that weight.
            informative = (expected >= _TYPE_LIFT * others) & (outside.sum() * _kl(expected, others) >= config.evidence)
            explained |= informative & (share * config.explain_ratio <= expected)
        return explained


def _plain_mask(stack: _Stack, t: int, config: ComponentConfig) -> tuple[np.ndarray, np.ndarray]:
    """The paper's procedure for trait `t`: (mask, colour id per pixel)."""
    rng = _trait_rng(config.seed, stack.traits[t])
    tokens = stack.trait_tokens[t]
    picks = np.stack([rng.choice(tokens, config.images_per_round, replace=False) for _ in range(config.rounds)])
    rounds = stack.ids[picks]  # R x k x P
    templates = rounds[:, 0]
    pieces = (rounds == templates[:, None]).all(axis=1)
    if stack.has_transparent:
        pieces &= templates != 0
    if config.combine == "union":
        mask = pieces.any(axis=0)
        colour = templates[pieces.argmax(axis=0), np.arange(pieces.shape[1])]
    else:
        mask = pieces.all(axis=0)
        colour = templates[0]
    return mask, colour


def _native_stack(images: Sequence[np.ndarray], grid: PixelGrid | None) -> tuple[np.ndarray, PixelGrid, np.ndarray]:
    """The images at native resolution as one RGBA stack, the grid, and which images took part.

    Each image is reduced as soon as it is read, so a lazy sequence never holds more than the
    grid-detection sample at full size. Images of another size than that sample's are left out.
    """
    if grid is None:
        sample = [
            _as_image(images[int(i)])
            for i in np.unique(np.linspace(0, len(images) - 1, min(GRID_SAMPLE, len(images))).astype(int))
        ]
        shapes, counts = np.unique(np.array([image.shape[:2] for image in sample]), axis=0, return_counts=True)
        size = tuple(int(v) for v in shapes[counts.argmax()])
        grid = detect_grid([image for image in sample if image.shape[:2] == size])
    native = np.zeros((len(images), grid.rows, grid.cols, 4), dtype=np.uint8)
    fits = np.zeros(len(images), dtype=bool)
    for i in range(len(images)):
        image = _as_image(images[i])
        if image.shape[:2] != (grid.height, grid.width):
            continue
        fits[i] = True
        native[i] = to_native(image, grid)
    return native[fits], grid, fits


def _as_image(image: np.ndarray) -> np.ndarray:
    """Any uint8 image as H x W x 4 RGBA (grey and RGB become opaque)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None].repeat(3, axis=-1)
    if image.shape[-1] == 4:
        return image
    return np.concatenate([image[..., :3], np.full((*image.shape[:2], 1), 255, dtype=np.uint8)], axis=-1)


def extract_components(
    images: Sequence[np.ndarray],
    token_traits: Sequence[Iterable[tuple[str | None, str | None]]],
    config: ComponentConfig = DEFAULT_CONFIG,
    grid: PixelGrid | None = None,
) -> ComponentSet:
    """Every trait's component from a collection's standardized images (H x W x 3/4 uint8, or H x W).

    `token_traits[i]` lists image i's (trait_type, value) pairs. `images` may be any sequence (a
    lazy loader is fine): each image is reduced to one pixel per art pixel as it is read, so the
    full-size stack is never held. `grid` comes from the standardize rows when known, else it is
    detected. Images of another size than most are left out (`skipped_tokens`).
    """
    if len(images) != len(token_traits):
        raise ValueError(f"{len(images)} images but {len(token_traits)} trait lists")
    if len(images) == 0:
        return ComponentSet(grid or PixelGrid.identity(0, 0), config.method, 0, 0, 0, [])
    native, grid, fits = _native_stack(images, grid)
    ids, palette = encode_colours(native)
    traits, trait_tokens, per_token = _index_traits([traits for traits, fit in zip(token_traits, fits) if fit])
    stack = _Stack(ids, palette, bool(palette[0] == _TRANSPARENT), traits, trait_tokens, per_token)
    pixels, n_all = ids.shape[1], len(ids)
    too_many = config.method == "contrast" and pixels * stack.n_colours > config.max_cells
    contrast = _Contrast(stack, config) if config.method == "contrast" and not too_many else None
    rgba_palette = _unpack(palette)
    plain = config.method == "plain"
    components = []
    for t, (trait, tokens) in enumerate(zip(traits, trait_tokens)):
        n = len(tokens)
        status, reason, mask, rgba, agreement = "ok", None, None, None, None
        if n >= n_all:
            status, reason = "base_layer", "every token has it: nothing to contrast it with"
        elif n < config.images_per_round:
            status, reason = "too_few_tokens", f"{n} tokens < images_per_round {config.images_per_round}"
        elif too_many:
            status = "too_many_colours"
            reason = f"{pixels} native pixels x {stack.n_colours} colours > max_cells {config.max_cells}"
        else:
            flat_mask, colour = contrast.mask(t) if contrast else _plain_mask(stack, t, config)
            if not flat_mask.any():
                status, reason = "empty", "no pixel is specific to this trait"
            else:
                agreement = _agreement(ids, tokens, flat_mask, colour)
                mask = flat_mask.reshape(grid.rows, grid.cols)
                rgba = (
                    np.where(flat_mask[:, None], rgba_palette[colour], 0)
                    .astype(np.uint8)
                    .reshape(grid.rows, grid.cols, 4)
                )
        components.append(
            Component(
                trait_type=trait[0],
                value=trait[1],
                n_tokens=n,
                status=status,
                reason=reason,
                mask=mask,
                rgba=rgba,
                agreement=agreement,
                rounds=config.rounds if plain else 1,
                images_per_round=config.images_per_round if plain else n,
            )
        )
    return ComponentSet(grid, config.method, n_all, int((~fits).sum()), stack.n_colours, components)
