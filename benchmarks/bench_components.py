"""Benchmark component separation: quality on Nouns (ground truth) and speed on all 10,000 CryptoPunks.

    python benchmarks/bench_components.py            # markdown tables; writes docs/img/punk_components.png

Images are fed as the standardize stage writes them (pixel art enlarged by an integer factor with
nearest-neighbour, centred on a 512 px canvas) through a lazy sequence, so the 512 px stack is never
held; each image is reduced to its native grid as it is read. Nouns: tokens 0..4999, IoU per layer
of every part with at least 4 tokens against its visible ground truth, ours (`contrast`) against
the paper's plain procedure (4 images x 8 rounds, union or intersection of the rounds).
"""

from __future__ import annotations

import io
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

import json

import numpy as np
from PIL import Image

from nft_pipeline.components import (
    ComponentConfig,
    PixelGrid,
    component_rows,
    contact_sheet,
    detect_grid,
    extract_components,
    to_standardized,
)
from nft_pipeline.components.evaluate import NOUN_LAYERS, iou_by_layer, nouns_sample
from nft_pipeline.samples.punks import DATA_DIR as PUNKS_DIR
from nft_pipeline.samples.punks import CryptoPunks

NOUNS = 5_000
WIDTH = 512
SHEET = Path(__file__).resolve().parent.parent / "docs" / "img" / "punk_components.png"
METHODS = {
    "ours (contrast)": ComponentConfig(),
    "plain, union": ComponentConfig(method="plain", combine="union"),
    "plain, intersection": ComponentConfig(method="plain", combine="intersection"),
}


class Standardized(Sequence[np.ndarray]):
    """`art(i)` as the standardize stage writes RGBA pixel art, made when read: enlarged by the
    largest integer factor that fits 512 px, centred, the margin transparent."""

    def __init__(self, count: int, art: Callable[[int], np.ndarray]):
        self.count, self.art = count, art

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        art = self.art(index)
        block = WIDTH // max(art.shape[:2])
        top, left = (WIDTH - block * art.shape[0]) // 2, (WIDTH - block * art.shape[1]) // 2
        return to_standardized(art, PixelGrid.from_padding(WIDTH, WIDTH, block, top, left))


def timed(label: str, timings: list[tuple[str, float]], work: Callable[[], object]) -> object:
    started = time.perf_counter()
    result = work()
    timings.append((label, time.perf_counter() - started))
    return result


def nouns_quality(timings: list[tuple[str, float]]) -> str:
    sample = nouns_sample(range(NOUNS))
    standardized = Standardized(NOUNS, lambda i: sample.images[i])
    grid = detect_grid(standardized)
    assert grid == PixelGrid.from_padding(WIDTH, WIDTH, 16, 0, 0), grid
    results = {}
    for name, config in METHODS.items():
        results[name] = timed(
            f"Nouns {NOUNS:,}, {name} (512 px images in, native 32 x 32 grid)",
            timings,
            lambda config=config: extract_components(standardized, sample.traits, config, grid),
        )
    scores = {name: iou_by_layer(result, sample) for name, result in results.items()}
    lines = [
        "| layer | parts | " + " | ".join(f"{name} mean / min" for name in METHODS) + " |",
        "|---|---:|" + "---:|" * len(METHODS),
    ]
    for layer in NOUN_LAYERS:
        cells = [f"{np.mean(scores[name][layer]):.3f} / {np.min(scores[name][layer]):.3f}" for name in METHODS]
        lines.append(f"| {layer} | {len(scores[next(iter(METHODS))][layer])} | " + " | ".join(cells) + " |")
    ours = results["ours (contrast)"]
    statuses = Counter(component.status for component in ours.components)
    empty_truth = [
        f"{c.trait_type} {c.value} ({c.status})"
        for c in ours.components
        if not sample.truth[(c.trait_type, c.value)].any()
    ]
    lines.append("")
    lines.append(f"Ours, statuses over all {len(ours.components)} parts: {dict(sorted(statuses.items()))}.")
    lines.append(f"Parts whose truth is empty (not scored): {', '.join(empty_truth) or 'none'}.")
    return "\n".join(lines)


def punk_traits() -> list[list[tuple[str, str]]]:
    with open(PUNKS_DIR / "metadata.jsonl", encoding="utf-8") as lines:
        return [[(a["trait_type"], a["value"]) for a in json.loads(line)["attributes"]] for line in lines]


def punks(timings: list[tuple[str, float]]) -> str:
    collection = CryptoPunks()
    traits = punk_traits()
    count = len(traits)
    native = np.stack([collection.tile(i) for i in range(count)])
    timed(f"CryptoPunks {count:,}, ours, native 24 x 24 tiles in", timings, lambda: extract_components(native, traits))
    standardized = Standardized(count, lambda i: native[i])
    result = timed(
        f"CryptoPunks {count:,}, ours, 512 px images in (enlarging each included)",
        timings,
        lambda: extract_components(standardized, traits),
    )
    rows = timed(
        f"CryptoPunks, {len(result.components)} table rows (512 px PNGs)",
        timings,
        lambda: component_rows("cryptopunks", result),
    )
    decode = Image.open(io.BytesIO(_png(standardized[0])))
    started = time.perf_counter()
    for _ in range(50):
        decode = Image.open(io.BytesIO(_png(standardized[0])))
        np.asarray(decode.convert("RGBA"))
    png_ms = (time.perf_counter() - started) / 50 * 1000
    SHEET.parent.mkdir(parents=True, exist_ok=True)
    SHEET.write_bytes(contact_sheet(rows, n=48))
    ok = [row for row in rows if row["status"] == "ok"]
    coverage = np.array([row["coverage"] for row in ok])
    agreement = np.array([row["agreement"] for row in ok])
    statuses = Counter(row["status"] for row in rows)
    lines = [
        f"Grid detected on the 512 px images: {result.grid}.",
        f"Statuses: {dict(sorted(statuses.items()))}; {result.n_colours} distinct colours.",
        "",
        "| trait type | components | coverage mean | coverage min | coverage max | agreement mean |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for trait_type in ("Type", "Accessory"):
        chosen = [row for row in ok if row["trait_type"] == trait_type]
        cov = np.array([row["coverage"] for row in chosen])
        agr = np.array([row["agreement"] for row in chosen])
        lines.append(
            f"| {trait_type} | {len(chosen)} | {cov.mean():.4f} | {cov.min():.4f} | {cov.max():.4f} | {agr.mean():.3f} |"
        )
    lines.append(
        f"| all | {len(ok)} | {coverage.mean():.4f} | {coverage.min():.4f} | {coverage.max():.4f} | {agreement.mean():.3f} |"
    )
    not_ok = [f"{row['value']} ({row['status']}: {row['reason']})" for row in rows if row["status"] != "ok"]
    lines.append("")
    lines.append(f"Without a component: {'; '.join(not_ok) or 'none'}.")
    lines.append(
        f"For scale: decoding one 512 px punk PNG costs {png_ms:.1f} ms here ({png_ms * count / 1000:.0f} s for all)."
    )
    return "\n".join(lines)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    timings: list[tuple[str, float]] = []
    print("## Nouns: IoU against the visible ground truth (tokens 0..4999, parts with >= 4 tokens)\n")
    print(nouns_quality(timings))
    print("\n## CryptoPunks: all 10,000 (Type + Accessory)\n")
    print(punks(timings))
    print("\n## Timings (seconds, 2 shared cores)\n")
    print("| step | s |\n|---|---:|")
    for label, seconds in timings:
        print(f"| {label} | {seconds:.1f} |")
    print(f"\nContact sheet: {SHEET.relative_to(SHEET.parent.parent.parent)}")


if __name__ == "__main__":
    main()
