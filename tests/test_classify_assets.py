"""The classification assets materialized for real on small sample slices through the gateway."""

from __future__ import annotations

import dagster as dg
import pytest

from nft_pipeline import schemas
from nft_pipeline.classify.audit import TOKEN_AUDIT
from nft_pipeline.classify.colours import TOKEN_COLOURS
from nft_pipeline.classify.traits import METHODS, TRAIT_PREDICTIONS
from nft_pipeline.definitions import ALL_ASSETS, PARTITIONED_ASSETS
from nft_pipeline.gateway import SampleGateway, running_gateway
from nft_pipeline.storage import DataLayout, read_table
from resources import local_resources
from tests.conftest import temp_instance

SUPPLIES = {"nouns": 80, "mixedmedia": 60}
CLASSIFY = ("trait_predictions", "token_colours", "token_audit")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    collections = next(a for a in ALL_ASSETS if a.key.path == ["collections"])
    with running_gateway(SampleGateway(supplies=SUPPLIES)) as running, temp_instance(root / "dagster") as instance:
        resources = local_resources(running.base_url, root / "data")
        assert dg.materialize([collections], instance=instance, resources=resources).success
        yield DataLayout(root / "data"), {
            slug: dg.materialize(PARTITIONED_ASSETS, partition_key=slug, instance=instance, resources=resources) for slug in SUPPLIES
        }


def test_classification_assets_write_their_tables_with_metadata_and_checks(runs):
    layout, results = runs
    for slug, result in results.items():
        assert result.success, slug
        materialized = {e.asset_key.path[-1]: e for e in result.get_asset_materialization_events()}
        for name in CLASSIFY:
            metadata = materialized[name].materialization.metadata
            assert metadata["dagster/row_count"].value > 0, (slug, name)
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["colours_for_ok_images"] and checks["every_image_predicted"], (slug, checks)
        assert "mismatch_rate_below_threshold" in checks
        methods = materialized["trait_predictions"].materialization.metadata["methods"].value
        assert methods and all(choice["method"] in METHODS for choice in methods.values()), methods
        colours = read_table(layout.partition_path("token_colours", slug), TOKEN_COLOURS)
        images = read_table(layout.partition_path("standardized_images", slug), schemas.STANDARDIZED_IMAGES)
        assert colours.num_rows == images.num_rows
        assert read_table(layout.partition_path("token_audit", slug), TOKEN_AUDIT).num_rows == images.num_rows
    predictions = read_table(layout.partition_path("trait_predictions", "mixedmedia"), TRAIT_PREDICTIONS).to_pylist()
    # The mixed-media collection has tokens whose metadata fails on purpose: they get predictions.
    assert any(r["source"] == "missing_metadata" and r["declared_value"] is None for r in predictions)
    nouns = read_table(layout.partition_path("token_colours", "nouns"), TOKEN_COLOURS)
    assert set(nouns["background_hex"].to_pylist()) == {"#d5d7e1", "#e1d7d5"}
