"""Automation: the per-collection pipeline job, a daily incremental refresh, catalog discovery,
and the sensor that evaluates declarative automation conditions (`nft_index` follows its inputs).

The refresh re-reads every collection's token list and fetches only what is new or changed:
`tokens` reuses metadata fetched from an unchanged `tokenUri`, `raw_media` reuses bodies stored
under the same URL, and later stages reuse outputs whose inputs did not change.
"""

import json
from collections.abc import Iterator, Sequence

import dagster as dg

from assets.partitions import collection_partitions
from resources import NftSourcesResource

PIPELINE_JOB = "collection_pipeline"


def collection_pipeline_job(partitioned_assets: Sequence[dg.AssetsDefinition]):
    """Every per-collection asset for one partition, in dependency order.

    In process: the steps of one collection run one after another in the run's process (the chain
    is nearly linear, and the heavy steps spread over cores themselves), so the run imports the
    code once instead of once per step (docs/scale.md, "Cheap runs per collection").
    """
    return dg.define_asset_job(
        PIPELINE_JOB,
        selection=dg.AssetSelection.assets(*partitioned_assets),
        partitions_def=collection_partitions,
        description="Discover, download and prepare one collection (a partition).",
        executor_def=dg.in_process_executor,
    )


@dg.schedule(job_name=PIPELINE_JOB, cron_schedule="0 4 * * *", execution_timezone="UTC")
def daily_refresh(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
    """One refresh run per known collection per day (the run key makes a day's request unique)."""
    day = context.scheduled_execution_time.date().isoformat()
    for slug in context.instance.get_dynamic_partitions(collection_partitions.name):
        yield dg.RunRequest(run_key=f"refresh-{day}-{slug}", partition_key=slug, tags={"nft_pipeline/refresh": day})


@dg.sensor(job_name=PIPELINE_JOB, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def catalog_discovery(context: dg.SensorEvaluationContext, sources: NftSourcesResource) -> dg.SensorResult:
    """Adds a partition and requests a first run for each new catalog slug.

    A slug removed from the catalog keeps its partition and data; it is reported in the log and
    the cursor so that nobody loses a collection's history by editing a CSV.
    """
    slugs = [entry.slug for entry in sources.entries() if entry.problem is None]
    known = set(context.instance.get_dynamic_partitions(collection_partitions.name))
    new = [slug for slug in slugs if slug not in known]
    removed = sorted(known - set(slugs))
    if removed:
        context.log.warning(f"collections no longer in catalog {sources.catalog!r} (data kept): {', '.join(removed)}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"discover-{slug}", partition_key=slug) for slug in new],
        dynamic_partitions_requests=[collection_partitions.build_add_request(new)] if new else [],
        cursor=json.dumps({"catalog": sources.catalog, "known": len(known) + len(new), "removed": removed}),
    )


# Dagster adds a sensor of this name by itself when an asset has an automation condition, but
# stopped until someone turns it on in the UI; the index would then silently stop following the
# refresh and new models. Declared under the same name so that it runs from the start. It covers
# every asset, so an automation condition added later is evaluated too (assets without one are skipped).
automation_conditions = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions: `nft_index` after its inputs or the model change.",
)
