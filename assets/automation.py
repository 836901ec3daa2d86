"""Automation: the per-collection pipeline job, a daily incremental refresh, catalog discovery,
and the sensor that evaluates declarative automation conditions (`nft_index` follows its inputs).

The refresh re-reads every collection's token list and fetches only what is new or changed:
`tokens` reuses metadata fetched from an unchanged `tokenUri`, `raw_media` reuses bodies stored
under the same URL, and later stages reuse outputs whose inputs did not change.
"""

import json
import warnings
from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.batching import COLLECTIONS_PER_RUN
from assets.partitions import collection_partitions
from resources import NftSourcesResource

PIPELINE_JOB = "collection_pipeline"


def collection_pipeline_job(partitioned_assets: Sequence[dg.AssetsDefinition]):
    """Every per-collection asset for one partition or a range of them, in dependency order.

    In process: the steps of one collection run one after another in the run's process (the chain
    is nearly linear, and the heavy steps spread over cores themselves), so the run imports the
    code once instead of once per step (docs/scale.md, "Cheap runs per collection").
    """
    return dg.define_asset_job(
        PIPELINE_JOB,
        selection=dg.AssetSelection.assets(*partitioned_assets),
        description="Discover, download and prepare one collection (a partition).",
        executor_def=dg.in_process_executor,
    )


def collection_runs(
    slugs: Sequence[str], run_key_prefix: str, tags: dict[str, str] | None = None, per_run: int | None = None
) -> list[dg.RunRequest]:
    """Runs of the pipeline job over `slugs`, at most `per_run` (`COLLECTIONS_PER_RUN`) collections each.

    `slugs` must be consecutive partitions (in the order they were added), because a run covers
    the range from its first to its last. A run of one collection is a plain partition run.
    """
    per_run = per_run or COLLECTIONS_PER_RUN
    requests = []
    for start in range(0, len(slugs), per_run):
        chunk = slugs[start : start + per_run]
        first, last = chunk[0], chunk[-1]
        if len(chunk) == 1:
            requests.append(dg.RunRequest(run_key=f"{run_key_prefix}-{first}", partition_key=first, tags=tags or {}))
            continue
        range_tags = {**(tags or {}), ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}
        requests.append(dg.RunRequest(run_key=f"{run_key_prefix}-{first}..{last}", tags=range_tags))
    return requests


@dg.schedule(job_name=PIPELINE_JOB, cron_schedule="0 4 * * *", execution_timezone="UTC")
def daily_refresh(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Refresh runs over every known collection each day, `COLLECTIONS_PER_RUN` collections a run
    (the run key makes a day's request unique)."""
    day = context.scheduled_execution_time.date().isoformat()
    slugs = context.instance.get_dynamic_partitions(collection_partitions.name)
    return collection_runs(slugs, f"refresh-{day}", {"nft_pipeline/refresh": day})


@dg.sensor(job_name=PIPELINE_JOB, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def catalog_discovery(context: dg.SensorEvaluationContext, sources: NftSourcesResource) -> dg.SensorResult:
    """Adds a partition for each new catalog slug and requests their first runs, `COLLECTIONS_PER_RUN` a run.

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
        # The new partitions are added in this order after the known ones, so each chunk is a range.
        run_requests=collection_runs(new, "discover"),
        dynamic_partitions_requests=[collection_partitions.build_add_request(new)] if new else [],
        cursor=json.dumps({"catalog": sources.catalog, "known": len(known) + len(new), "removed": removed}),
    )


# Statuses of a run that has not finished: created, waiting in the run queue, or running.
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


class PipelineRunsFinished(dg.AutomationCondition):
    """True for every candidate while no run of the pipeline job is queued or running, else for none.

    `eager()` waits only for a partition's own inputs, so during the daily refresh (40 ranges
    of 25 at NFT1000's scale) it asked for the index range by range as each run ended: 33 index
    runs, each loading torch and updating the vector index, competing with the refresh for the
    CPU (docs/scale.md, "NFT1000 in miniature"). Held until the pipeline's runs have all ended,
    the partitions whose inputs changed are requested together, as ranges of
    `INDEX_COLLECTIONS_PER_RUN`. A run that hangs in `STARTED` holds the index until Dagster's run
    monitoring or a person ends it.
    """

    @property
    def name(self) -> str:
        return "pipeline_runs_finished"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        active = context.asset_graph_view.instance.get_runs_count(
            dg.RunsFilter(job_name=PIPELINE_JOB, statuses=ACTIVE_RUN_STATUSES)
        )
        return dg.AutomationResult(context, context.get_empty_subset() if active else context.candidate_subset)


# Dagster adds a sensor of this name by itself when an asset has an automation condition, but
# stopped until someone turns it on in the UI; the index would then silently stop following the
# refresh and new models. Declared under the same name so that it runs from the start. It covers
# every asset, so an automation condition added later is evaluated too (assets without one are skipped).
# Evaluated in the code server, not the daemon, because `PipelineRunsFinished` is our own Python.
# The parameter is beta in Dagster 1.13; its warning would print on every import of the definitions.
warnings.filterwarnings("ignore", message="Parameter `use_user_code_server`", category=dg.BetaWarning)
automation_conditions = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    use_user_code_server=True,
    description="Evaluates the assets' automation conditions: `nft_index` after its inputs or the model change.",
)
