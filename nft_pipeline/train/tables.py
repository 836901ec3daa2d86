"""The pipeline's tables in and out of training: examples and components in, run rows out.

`clip_model` reads the `standardized_images`, `captions` and `components` partitions it trains on
and writes one `training_runs` row per run plus one `training_epochs` row per epoch, so runs can
be compared with DuckDB like every other table, and so what is built from a model (the search
index, the CVI report) finds it there (`trained_run`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from nft_pipeline.captions import caption_from_row
from nft_pipeline.components.table import decode_png
from nft_pipeline.location import Location, stored_path
from nft_pipeline.storage import DataLayout
from nft_pipeline.train.data import TrainingExample
from nft_pipeline.train.loop import TrainingRun
from nft_pipeline.train.prepared import Component, Trait

# Decoded components kept per process (about 1.3 MB each at 512 wide).
DECODED_COMPONENTS = 128

TRAINING_RUNS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("base_model", pa.string(), nullable=False),
        pa.field("collections", pa.list_(pa.string())),
        pa.field("masking_mode", pa.string()),
        pa.field("masking_probability", pa.float64()),
        pa.field("masking_fill", pa.string()),
        pa.field("split", pa.string()),  # strategy; the full split is in split_json
        pa.field("split_json", pa.string()),
        pa.field("epochs", pa.int32()),
        pa.field("steps", pa.int64()),
        pa.field("samples_per_second", pa.float64()),
        pa.field("zero_shot_t2i_r1", pa.float64()),
        pa.field("fine_tuned_t2i_r1", pa.float64()),
        pa.field("fine_tuned_t2i_r5", pa.float64()),
        pa.field("fine_tuned_t2i_r10", pa.float64()),
        pa.field("interpolated_t2i_r1", pa.float64()),  # WiSE-FT's model (the saved one), when on
        pa.field("metrics_json", pa.string()),
        pa.field("config_json", pa.string()),
        pa.field("model_dir", pa.string()),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
    ]
)

TRAINING_EPOCHS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("step", pa.int64()),
        pa.field("train_loss", pa.float64()),
        pa.field("val_loss", pa.float64()),
        pa.field("lr", pa.float64()),
        pa.field("samples_per_second", pa.float64()),
    ]
)


def training_examples(images: pa.Table, captions: pa.Table, root: Location | None = None) -> list[TrainingExample]:
    """One example per token that has both an `ok` standardized image and a caption.

    `root`: the data root the tables came from; on object storage each image path becomes a path
    there (with the root's credentials), so the training workers read the PNGs from it.
    """
    by_key = {(row["collection"], row["token_id"]): row for row in captions.to_pylist()}
    examples = []
    for row in images.select(["collection", "token_id", "status", "png_path"]).to_pylist():
        caption = by_key.get((row["collection"], row["token_id"]))
        if row["status"] == "ok" and row["png_path"] and caption is not None:
            examples.append(
                TrainingExample(
                    row["collection"],
                    row["token_id"],
                    stored_path(row["png_path"], root) if root is not None else Path(row["png_path"]),
                    caption_from_row(caption),
                )
            )
    return examples


@functools.lru_cache(maxsize=DECODED_COMPONENTS)
def _decoded(mask_png: bytes, rgba_png: bytes) -> Component:
    mask, rgba = decode_png(mask_png, "1"), decode_png(rgba_png, "RGBA")
    mask.setflags(write=False)  # shared by every image the cache serves it to
    rgba.setflags(write=False)
    return mask, rgba


class EncodedComponents(Mapping[Trait, Component | None]):
    """One collection's components, kept as their PNG bytes and decoded when used.

    Decoded, a 512-wide component is its mask and RGBA pixels, about 1.3 MB: the 7,418 components of
    1,000 generated collections took 23 GB and the training run was killed for memory
    (docs/scale.md). As PNGs they are 14 MB. The last `DECODED_COMPONENTS` decoded are kept (per
    process), since an image's tags are mostly its collection's common traits.
    """

    def __init__(self, encoded: dict[Trait, tuple[bytes, bytes] | None]):
        self.encoded = encoded

    def __getitem__(self, trait: Trait) -> Component | None:
        pngs = self.encoded[trait]
        return _decoded(*pngs) if pngs is not None else None

    def __iter__(self) -> Iterator[Trait]:
        return iter(self.encoded)

    def __len__(self) -> int:
        return len(self.encoded)


def component_lookup(components: pa.Table) -> dict[str, EncodedComponents]:
    """collection -> (trait_type, value) -> (mask, rgba), or None for traits without a component."""
    encoded: dict[str, dict[Trait, tuple[bytes, bytes] | None]] = {}
    columns = ["collection", "trait_type", "value", "status", "mask_png", "rgba_png"]
    for row in components.select(columns).to_pylist():
        trait = (row["trait_type"] or "", row["value"] or "")
        ok = row["status"] == "ok" and row["mask_png"] and row["rgba_png"]
        encoded.setdefault(row["collection"], {})[trait] = (row["mask_png"], row["rgba_png"]) if ok else None
    return {collection: EncodedComponents(traits) for collection, traits in encoded.items()}


def _t2i(metrics: Mapping[str, Any] | None, k: int) -> float | None:
    if not metrics:
        return None
    return metrics.get("global", {}).get("text_to_image", {}).get(f"R@{k}")


def run_rows(run: TrainingRun, collections: list[str]) -> tuple[pa.Table, pa.Table]:
    """The run's `training_runs` row and its `training_epochs` rows."""
    run_row = {
        "run_id": run.run_id,
        "base_model": run.base_model,
        "collections": collections,
        "masking_mode": run.masking.mode,
        "masking_probability": run.masking.probability,
        "masking_fill": run.masking.fill,
        "split": run.config.split,
        "split_json": json.dumps(run.split.to_dict()),
        "epochs": run.epochs,
        "steps": run.steps,
        "samples_per_second": run.samples_per_second,
        "zero_shot_t2i_r1": _t2i(run.zero_shot, 1),
        "fine_tuned_t2i_r1": _t2i(run.fine_tuned, 1),
        "fine_tuned_t2i_r5": _t2i(run.fine_tuned, 5),
        "fine_tuned_t2i_r10": _t2i(run.fine_tuned, 10),
        "interpolated_t2i_r1": _t2i(run.interpolated, 1),
        "metrics_json": json.dumps({"zero_shot": run.zero_shot, "fine_tuned": run.fine_tuned, "interpolated": run.interpolated}),
        "config_json": json.dumps(run.config.to_dict()),
        "model_dir": str(run.model_dir) if run.model_dir else None,
        "finished_at": datetime.now(UTC),
    }
    epochs = [
        {"run_id": run.run_id, **{name: metric.get(name) for name in TRAINING_EPOCHS.names if name != "run_id"}}
        for metric in run.epoch_metrics
    ]
    return pa.Table.from_pylist([run_row], schema=TRAINING_RUNS), pa.Table.from_pylist(epochs, schema=TRAINING_EPOCHS)


def trained_run(layout: DataLayout, run_id: str = "") -> dict[str, Any]:
    """The `training_runs` row of `run_id`, or of the latest run that saved a model if empty.

    Read from the data directory, not from a Dagster instance's `clip_model` materializations:
    the models, the index and the report all live in the data directory, and when several
    instances share it (a laptop's `dagster dev` and the deployment, a backfill on another
    instance) each instance only records the runs it materialized itself. Asking the instance,
    two of them could disagree on the latest model and write embeddings of two models into the
    one shared index; every reader of this table agrees. Raises `LookupError` when there is none.
    """
    where = "model_dir IS NOT NULL" + (" AND run_id = ?" if run_id else "")
    sql = f"SELECT * FROM {{training_runs}} WHERE {where} ORDER BY finished_at DESC LIMIT 1"
    try:
        rows = layout.query(sql, [run_id] if run_id else None).to_pylist()
    except KeyError:  # no run has written the table yet: it has no placeholder to fill
        rows = []
    if not rows:
        raise LookupError(f"no finished training run{f' {run_id!r}' if run_id else ''}: materialize `clip_model` first")
    return rows[0]
