"""The Dagster `Definitions` of the pipeline (the one module of `nft_pipeline` that imports Dagster).

Loaded by `workspace.yaml` / `dagster dev` and by `nft-pipeline demo`.
"""

from __future__ import annotations

import os

import dagster as dg

from assets import automation, images, index, ingest, media, model, report, text
from assets import classify
from assets.clones import clones
from assets.map import collection_map, combined_map
from assets.partitions import collection_partitions
from resources import local_resources

ALL_ASSETS = [
    ingest.collections,
    ingest.tokens,
    media.raw_media,
    images.standardized_images,
    text.captions,
    images.components,
    model.clip_model,
    index.nft_index,
    report.cvi_report,
    classify.trait_predictions,
    classify.token_colours,
    classify.token_audit,
    clones,
    collection_map,
    combined_map,
]
# What needs a trained model: per collection, but not with the stages that prepare a collection
# (the `collection_pipeline` job and the daily refresh run before any model exists, so they would
# fail on it). It follows its inputs and the model through its automation condition, evaluated
# by `automation.automation_conditions`. See ARCHITECTURE.md, "Refresh".
MODEL_DEPENDENT_PARTITIONED = [index.nft_index, collection_map]
PARTITIONED_ASSETS = [
    a for a in ALL_ASSETS if a.partitions_def is collection_partitions and a not in MODEL_DEPENDENT_PARTITIONED
]
UNPARTITIONED_DOWNSTREAM = [model.clip_model, report.cvi_report]


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=ALL_ASSETS,
        jobs=[automation.collection_pipeline_job(PARTITIONED_ASSETS)],
        schedules=[automation.daily_refresh],
        sensors=[automation.catalog_discovery, automation.automation_conditions],
        resources=resources or local_resources(),
        # Every other run (a partition of `nft_index` requested by the automation sensor, a
        # backfill or a materialization from the UI, training) in process too: see
        # `automation.collection_pipeline_job` and docs/scale.md, "Cheap runs per collection".
        executor=dg.in_process_executor,
    )


defs = build_definitions()


# The demo's short training: one row of the masking ablation (docs/experiments.md): a fixed
# sample of 4,000 punks, by_token split, 6 epochs (300 steps), masking p = 0.3, the masked row
# closest to plain fine-tuning there. Shorter runs left the model near chance (2,000 pairs x 2
# epochs: text-to-image top-1 0.1% among 2,000 punks).
DEMO_TRAINING = {
    "collections": ["cryptopunks"],
    "max_examples": 4000,
    "epochs": 6,
    "split": "by_token",
    "masking_probability": 0.3,
    "num_workers": 2,
    "learning_rate": 5e-4,  # the tiny preset learns from scratch: ten times the fine-tuning default
    "caption_phrasings": True,  # trained on the ways people write its traits (issue #15), not one template
}
DEMO_LOGGING = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def materialize_collections(instance: dg.DagsterInstance, resources: dict, partitions: list[str] | None = None) -> list[str]:
    """Materialize `collections`, every per-collection asset for each partition (or the given ones),
    then the model and the report over them, then the search index of each partition with that
    model (in process, where no sensor runs to do it). Used by `nft-pipeline demo`; raises if a run fails."""
    dg.materialize([ingest.collections], instance=instance, resources=resources, run_config=DEMO_LOGGING)
    keys = partitions or instance.get_dynamic_partitions(collection_partitions.name)
    for key in keys:
        dg.materialize(PARTITIONED_ASSETS, partition_key=key, instance=instance, resources=resources, run_config=DEMO_LOGGING)
    dg.materialize([clones], instance=instance, resources=resources, run_config=DEMO_LOGGING)  # across the collections
    training = {**DEMO_TRAINING, "collections": [k for k in DEMO_TRAINING["collections"] if k in keys] or list(keys)}
    run_config = {**DEMO_LOGGING, "ops": {"clip_model": {"config": training}}}
    dg.materialize(UNPARTITIONED_DOWNSTREAM, instance=instance, resources=resources, run_config=run_config)
    for key in keys:
        dg.materialize(
            MODEL_DEPENDENT_PARTITIONED, partition_key=key, instance=instance, resources=resources, run_config=DEMO_LOGGING
        )
    return list(keys)


def run_pipeline(gateway_url: str, data_dir, partitions: list[str] | None = None) -> list[str]:
    """Materialize everything against `gateway_url` into `data_dir` on the `$DAGSTER_HOME` instance
    (an ephemeral one if unset), so runs show up in `dagster dev` afterwards."""
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    with instance:
        return materialize_collections(instance, local_resources(gateway_url, data_dir), partitions)
