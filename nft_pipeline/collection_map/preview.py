"""The PNG preview of a map for Dagster metadata: every token as a dot coloured by its cluster."""

from __future__ import annotations

import io
import pyarrow as pa
import pyarrow.compute as pc

from nft_pipeline.collection_map.clusters import Cluster


def preview_png(table: pa.Table, clusters: dict[int, Cluster], title: str, labelled: int = 8) -> bytes:
    """A 6 x 6 inch scatter of the map's positioned tokens, grey for no cluster, the `labelled` largest clusters named."""
    import matplotlib  # heavy: only when drawing

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table.filter(pc.equal(table["status"], "ok"))
    x, y = ok["x"].to_numpy(), ok["y"].to_numpy()
    cluster = ok["cluster"].to_numpy()
    figure, axes = plt.subplots(figsize=(6, 6), dpi=100)
    size = max(1.0, min(20.0, 4000 / max(len(x), 1)))
    noise = cluster < 0
    axes.scatter(x[noise], y[noise], s=size, c="#c8c8c8", linewidths=0)
    axes.scatter(x[~noise], y[~noise], s=size, c=cluster[~noise] % 20, cmap="tab20", vmin=0, vmax=19, linewidths=0)
    for named in sorted(clusters.values(), key=lambda c: -c.size)[:labelled]:
        axes.annotate(named.label, named.centre, fontsize=7, ha="center", bbox={"boxstyle": "round", "fc": "white", "alpha": 0.7, "lw": 0})
    axes.set_title(title, fontsize=10)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_aspect("equal")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def largest_clusters(clusters: dict[int, Cluster], count: int = 10) -> list[dict]:
    """The largest clusters as rows (label, size, the traits that name them with their counts and lifts)."""
    return [
        {"cluster": c.cluster, "label": c.label, "size": c.size,
         "traits": ", ".join(f"{t.trait} {t.count}/{c.size} (lift {t.lift:.1f})" for t in c.traits)}
        for c in sorted(clusters.values(), key=lambda c: (-c.size, c.cluster))[:count]
    ]  # fmt: skip
