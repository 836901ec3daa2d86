"""Unchanged inputs, no work: a refresh whose inputs did not change computes nothing, counted.

Real materializations of the refresh job and `nft_index` on a temporary instance against the
sample gateway: the first run of a collection standardizes, separates, captions and embeds every
token; a second run with the same source standardizes no image (no PNG written), computes no
component mask, writes no caption and embeds no image, and reports the same data versions; a
token added at the source is then the only new work.
"""

from __future__ import annotations

import dagster as dg

from assets.automation import PIPELINE_JOB
from assets.index import nft_index
from assets.model import clip_model
from assets.partitions import collection_partitions
from assets.table_metadata import UNCHANGED_PREVIEW
from nft_pipeline.definitions import build_definitions
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.storage import DataLayout
from resources import local_resources
from tests.conftest import temp_instance
from tests.tiny_model import one_torch_thread

SLUG = "nouns"
TRAINING = {"ops": {"clip_model": {"config": {"collections": [SLUG], "epochs": 1, "batch_size": 16, "split": "by_token"}}}}
COUNTED = {
    "standardized_images": "standardized",
    "components": "masks_computed",
    "captions": "captioned",
    "nft_index": "embedded",
}


def counts_and_versions(results: list[dg.ExecuteInProcessResult]) -> tuple[dict[str, int], dict[str, str]]:
    """Per counted asset: the work it reported, and the data version it recorded."""
    counts, versions = {}, {}
    for result in results:
        for event in result.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            name = materialization.asset_key.to_user_string()
            if name in COUNTED:
                counts[name] = materialization.metadata[COUNTED[name]].value
                versions[name] = materialization.tags["dagster/data_version"]
    return counts, versions


def previews(results: list[dg.ExecuteInProcessResult]) -> dict[str, str]:
    """The image previews each image asset attached: a drawn image, or the unchanged note."""
    shown = {}
    for result in results:
        for event in result.get_asset_materialization_events():
            metadata = event.step_materialization_data.materialization.metadata
            for key in ("contact_sheet", "largest_components"):
                if key in metadata:
                    text = metadata[key].value
                    shown[key] = "image" if text.startswith("![") else "unchanged" if text == UNCHANGED_PREVIEW.value else text
    return shown


def png_mtimes(layout: DataLayout) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in (layout.images_dir / SLUG).glob("*.png")}


def test_a_refresh_with_unchanged_inputs_does_no_work(tmp_path):
    gateway = SampleGateway(supplies={SLUG: 40})  # a validation split of 2: the losses check needs one
    with running_gateway(gateway) as running, temp_instance(tmp_path / "dagster") as instance, one_torch_thread():
        resources = local_resources(running.base_url, tmp_path / "data")
        job = build_definitions(resources).resolve_job_def(PIPELINE_JOB)
        layout = DataLayout(tmp_path / "data")
        instance.add_dynamic_partitions(collection_partitions.name, [SLUG])

        def refresh() -> list[dg.ExecuteInProcessResult]:
            prepared = job.execute_in_process(partition_key=SLUG, instance=instance)
            indexed = dg.materialize([nft_index], partition_key=SLUG, instance=instance, resources=resources)
            assert prepared.success and indexed.success
            return [prepared, indexed]

        first = job.execute_in_process(partition_key=SLUG, instance=instance)
        assert first.success
        assert dg.materialize([clip_model], instance=instance, resources=resources, run_config=TRAINING).success
        indexed = dg.materialize([nft_index], partition_key=SLUG, instance=instance, resources=resources)
        counts, versions = counts_and_versions([first, indexed])
        ok = counts["nft_index"]
        assert ok >= 30 and counts["standardized_images"] == 40 and counts["captions"] == 40 and counts["components"] > 0
        pngs = png_mtimes(layout)
        assert previews([first]) == {"contact_sheet": "image", "largest_components": "image"}
        table_mtime = layout.partition_path("standardized_images", SLUG).stat().st_mtime_ns

        unchanged = refresh()
        unchanged_counts, unchanged_versions = counts_and_versions(unchanged)
        assert unchanged_counts == {name: 0 for name in COUNTED}
        assert unchanged_versions == versions
        assert png_mtimes(layout) == pngs  # no PNG written again
        assert layout.partition_path("standardized_images", SLUG).stat().st_mtime_ns == table_mtime  # nor the table
        assert previews(unchanged) == {"contact_sheet": "unchanged", "largest_components": "unchanged"}

        gateway.set_supply(SLUG, 41)  # one new token at the source
        changed = refresh()
        counts, new_versions = counts_and_versions(changed)
        assert previews(changed) == {"contact_sheet": "image", "largest_components": "image"}
        assert counts["standardized_images"] == 1 and counts["captions"] == 41  # captions: one table per partition
        assert counts["nft_index"] <= 1 and counts["components"] > 0
        assert all(new_versions[name] != versions[name] for name in ("captions", "components", "standardized_images"))
