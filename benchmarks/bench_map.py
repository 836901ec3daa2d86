"""The collection map's speed: layout, incremental placement, first paint and pan/zoom frame rate.

Printed as a markdown table (docs/map.md holds the results and the command):

1. the layout of every CryptoPunk in the index (UMAP, cosine, seeded; numba's compile included,
   as a fresh asset run pays it), against the PCA layout of the same embeddings (the baseline),
   plus HDBSCAN, the cluster labels and the neighbourhood-preservation score (k = 10) of both;
2. placing 100 tokens in the layout of the others (`LayoutModel.transform` and their clusters),
   against two baselines: fitting the layout again (what a map without placement does for 100 new
   tokens) and UMAP's own `transform` (its first call in the process, after the refit);
   and how far each placed token lands from where the full fit put it;
3. the /map page in headless Chromium: time from navigation to the first frame with points, for
   the punks (with their thumbnail atlases) and for 100,000 synthetic points; then frames per
   second over a scripted pan and zoom of the 100,000 points (requestAnimationFrame timestamps),
   against the same requestAnimationFrame loop with nothing changing on the page (the baseline:
   the most headless Chromium delivers).

    python benchmarks/bench_map.py --data-dir /work/demo-data --screenshot docs/img/map.png

`--data-dir` must hold a search index (`nft_index`) with the punks; it is only read: maps and
atlases are written to a temporary directory. Run with 2 threads for numba / BLAS
(`NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2`) to match the 2-core budget.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
from aiohttp import web
from aiohttp.test_utils import TestServer

from nft_pipeline.collection_map.build import ALL_MAP, COLLECTION_MAP, MapInput, build_map, model_path
from nft_pipeline.collection_map.clusters import find_clusters, label_clusters, nearest_cluster
from nft_pipeline.collection_map.embeddings import read_map_input
from nft_pipeline.collection_map.layout import LayoutModel, fit_layout, neighbourhood_preservation
from nft_pipeline.collection_map.settings import MapSettings
from nft_pipeline.location import data_location
from nft_pipeline.storage import DataLayout, write_table
from nft_pipeline.web.map_routes import add_map_routes
from tests.chromium import chromium_page

SETTINGS = MapSettings()
PAN_FRAMES = 240
ZOOM_FRAMES = 120
PAN_SCRIPT = """
(async () => {
  const frame = () => new Promise(requestAnimationFrame);
  const measure = async (frames, step) => {
    await frame();
    const times = [performance.now()];
    for (let i = 0; i < frames; i++) { step(i); await frame(); times.push(performance.now()); }
    const gaps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
    return { fps: frames / ((times[times.length - 1] - times[0]) / 1000), p95_ms: gaps[Math.floor(gaps.length * 0.95)] };
  };
  const idle = await measure(%(zoom)d, () => {});
  const pan = await measure(%(pan)d, (i) => mapApp.panBy(i %% 120 < 60 ? 6 : -6, i %% 60 < 30 ? 3 : -3));
  const zoom = await measure(%(zoom)d, (i) => mapApp.zoomAt(i < %(zoom)d / 2 ? 1.02 : 1 / 1.02));
  return { idle, pan, zoom, frames_rendered: mapApp.state.frames };
})()
""" % {"pan": PAN_FRAMES, "zoom": ZOOM_FRAMES}


def timed(function, *args, **kwargs):
    """The result, wall seconds and CPU seconds of this process (all its threads): on a shared machine
    the CPU seconds say what the step costs, the wall seconds what it took beside the others."""
    started, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, (time.perf_counter() - started, time.process_time() - cpu)


def layout_rows(data_dir: Path) -> tuple[list[dict], MapInput, pa.Table]:
    tokens = read_map_input(data_dir, "cryptopunks")
    vectors = tokens.vectors
    rows = []
    pca_settings = replace(SETTINGS, umap_min_points=len(vectors) + 1)
    pca, pca_s = timed(fit_layout, vectors, pca_settings, tokens.space)
    umap_model, umap_s = timed(fit_layout, vectors, SETTINGS, tokens.space)
    clusters, cluster_s = timed(find_clusters, umap_model.coords, SETTINGS)
    named, label_s = timed(label_clusters, clusters, umap_model.coords, tokens.traits, SETTINGS)
    score_umap = neighbourhood_preservation(vectors, umap_model.coords)
    score_pca = neighbourhood_preservation(vectors, pca.coords)
    rows.append({"what": f"layout of {len(vectors):,} punks, PCA (baseline)", "seconds": pca_s, "neighbourhood@10": score_pca})
    rows.append({"what": f"layout of {len(vectors):,} punks, UMAP (numba compile included)", "seconds": umap_s, "neighbourhood@10": score_umap})
    rows.append({"what": f"HDBSCAN clusters ({len(named)}) and their labels", "seconds": tuple(a + b for a, b in zip(cluster_s, label_s, strict=True)), "neighbourhood@10": None})

    # Placing: the last 100 punks placed into the layout of the others, versus fitting again.
    keep = len(vectors) - 100
    others = LayoutModel(**{**umap_model.__dict__, "embeddings": umap_model.embeddings[:keep], "coords": umap_model.coords[:keep]})
    def place() -> np.ndarray:
        placed = others.transform(vectors[keep:])
        nearest_cluster(placed, others.coords, clusters[:keep])
        return placed

    placed, place_s = timed(place)
    import umap  # the baselines: fitting again, and UMAP's own transform

    reducer = umap.UMAP(
        metric="cosine", n_neighbors=SETTINGS.n_neighbors, min_dist=SETTINGS.min_dist, random_state=SETTINGS.seed, n_jobs=1, low_memory=True
    )
    _, refit_s = timed(reducer.fit, vectors[:keep])
    _, umap_transform_s = timed(reducer.transform, vectors[keep:])
    error = np.linalg.norm(placed - umap_model.coords[keep:], axis=1)
    spread = np.median(np.linalg.norm(umap_model.coords[:1000, None] - umap_model.coords[None, :1000], axis=-1))
    rows.append({"what": f"refit of {keep:,} punks (baseline for placing)", "seconds": refit_s, "neighbourhood@10": None})
    rows.append({"what": "placing 100 punks with UMAP's own transform (baseline; NN-descent compiled by the refit)", "seconds": umap_transform_s, "neighbourhood@10": None})
    rows.append({
        "what": f"placing 100 new punks (median {np.median(error) / spread:.3f} x the median pairwise distance from their full-fit position)",
        "seconds": place_s, "neighbourhood@10": None,
    })  # fmt: skip
    for named_cluster in sorted(named.values(), key=lambda c: -c.size)[:8]:
        print(f"  cluster {named_cluster.label}: " + ", ".join(f"{t.trait} {t.count} lift {t.lift:.1f}" for t in named_cluster.traits))
    fitted = pa.table({
        "collection": tokens.collection, "token_id": tokens.token_id, "x": umap_model.coords[:, 0], "y": umap_model.coords[:, 1],
        "cluster": clusters, "cluster_label": [None] * len(vectors), "layout_version": [umap_model.version] * len(vectors),
        "placement": ["fitted"] * len(vectors), "status": ["ok"] * len(vectors), "reason": [None] * len(vectors),
        "atlas": [None] * len(vectors), "atlas_slot": np.full(len(vectors), -1, np.int32),
    })  # fmt: skip
    return rows, tokens, (umap_model, fitted)


def synthetic_map(count: int, seed: int = 0) -> pa.Table:
    """`count` points in 60 Gaussian blobs, clustered by blob: the shape of a big UMAP map, no thumbnails."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1, 0.9, size=(60, 2))
    blob = rng.integers(0, 60, size=count)
    xy = np.clip(centres[blob] + rng.normal(scale=0.025, size=(count, 2)), 0, 1)
    return pa.table({
        "collection": ["synthetic"] * count, "token_id": [str(i) for i in range(count)], "x": xy[:, 0], "y": xy[:, 1],
        "cluster": blob.astype(np.int32), "cluster_label": [f"Blob {b}" for b in blob], "layout_version": ["synthetic"] * count,
        "placement": ["fitted"] * count, "status": ["ok"] * count, "reason": [None] * count, "atlas": [None] * count,
        "atlas_slot": np.full(count, -1, np.int32),
    })  # fmt: skip


async def browser_rows(punks_dir: Path, punks_label: str, synthetic_dir: Path, points: int, screenshot: Path | None) -> list[dict]:
    rows = []
    for data_dir, name, label in [(punks_dir, "cryptopunks", punks_label), (synthetic_dir, ALL_MAP, f"{points:,} synthetic points")]:
        app = add_map_routes(web.Application(), data_dir)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            with tempfile.TemporaryDirectory() as profile:
                async with chromium_page(Path(profile)) as page:
                    await page.open(str(server.make_url(f"/map?map={name}")), (1400, 900))
                    await page.wait_for("window.mapApp && mapApp.firstPaintMs !== null", timeout=120)
                    first = await page.evaluate("mapApp.firstPaintMs")
                    rows.append({"what": f"first paint, {label}", "value": f"{first / 1000:.2f} s"})
                    if name == ALL_MAP:
                        result = await page.evaluate(PAN_SCRIPT)
                        for kind in ("idle", "pan", "zoom"):
                            prefix = "requestAnimationFrame, nothing changing (baseline)" if kind == "idle" else f"{kind}, {label}"
                            rows.append({"what": prefix, "value": f"{result[kind]['fps']:.1f} frames/s (p95 frame {result[kind]['p95_ms']:.1f} ms)"})
                    else:
                        await page.wait_for("mapApp.thumbnailsPaintMs !== null", timeout=120)
                        rows.append({"what": f"thumbnails painted, {label}", "value": f"{await page.evaluate('mapApp.thumbnailsPaintMs') / 1000:.2f} s"})
                        if screenshot is not None:  # the clusters in the side panel, the third largest on the map
                            await page.evaluate(
                                "(() => { const d = mapApp.state.data, c = d.clusters[Math.min(2, d.clusters.length - 1)].cluster;"
                                " mapApp.focus(d.cluster.map((k, i) => k === c ? i : -1).filter(i => i >= 0)); })()"
                            )
                            await asyncio.sleep(1.0)
                            await page.screenshot(screenshot)
        finally:
            await server.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="a data directory with the punks in its search index (read only)")
    parser.add_argument("--points", type=int, default=100_000, help="synthetic points for the frame-rate test")
    parser.add_argument("--screenshot", type=Path, help="save the punks map as Chromium shows it")
    args = parser.parse_args()
    rows, tokens, fitted = layout_rows(args.data_dir)
    print("| step | wall s | CPU s | neighbourhood preservation @10 |\n|---|---|---|---|")
    for row in rows:
        score = "" if row["neighbourhood@10"] is None else f"{row['neighbourhood@10']:.3f}"
        print(f"| {row['what']} | {row['seconds'][0]:.2f} | {row['seconds'][1]:.2f} | {score} |")
    with tempfile.TemporaryDirectory() as work:
        punks_dir, synthetic_dir = Path(work) / "punks", Path(work) / "synthetic"
        # The fitted layout as a previous map without thumbnails: build_map keeps every position and
        # makes the atlases (the path of a refresh with nothing new), rather than fitting a third time.
        model, previous = fitted
        model.save(model_path(punks_dir, "cryptopunks", model.version))
        built, atlas_s = timed(build_map, tokens, previous.cast(COLLECTION_MAP), punks_dir, "cryptopunks", SETTINGS)
        print(f"\nthumbnail atlases of {len(tokens):,} punks (build_map, nothing new): {atlas_s[0]:.1f} s wall, {atlas_s[1]:.1f} s CPU")
        write_table(built.table, DataLayout(data_location(str(punks_dir))).partition_path("collection_map", "cryptopunks"), COLLECTION_MAP)
        write_table(synthetic_map(args.points), DataLayout(data_location(str(synthetic_dir))).table_path("combined_map"), COLLECTION_MAP)
        browser = asyncio.run(browser_rows(punks_dir, f"{len(tokens):,} punks", synthetic_dir, args.points, args.screenshot))
    print("\n| in headless Chromium | measured |\n|---|---|")
    for row in browser:
        print(f"| {row['what']} | {row['value']} |")


if __name__ == "__main__":
    main()
