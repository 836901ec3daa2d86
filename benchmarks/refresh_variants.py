"""The pipeline's definitions with the per-collection job on the multiprocess executor: the
baseline that `bench_refresh.py` compares the in-process default against (one process per step)."""

import dagster as dg

from assets import automation
from assets.partitions import collection_partitions
from nft_pipeline.definitions import ALL_ASSETS, PARTITIONED_ASSETS
from resources import local_resources

defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[
        dg.define_asset_job(
            automation.PIPELINE_JOB,
            selection=dg.AssetSelection.assets(*PARTITIONED_ASSETS),
            partitions_def=collection_partitions,
            executor_def=dg.multiprocess_executor,
        )
    ],
    resources=local_resources(),
)
