"""NFT1000 in miniature, 20 collections, through `dagster-daemon` on PostgreSQL (tests/daemon_stack.py).

The production path end to end: the discovery sensor backfills every generated collection, a
queued training run, the automation sensor's index runs, the report, then a refresh after 1% more
tokens are minted, which must fetch the new tokens' files and nothing else. `benchmarks/bench_scale.py`
runs the same stages at larger sizes and times them.
"""

from __future__ import annotations

import lancedb
import pytest

from nft_pipeline.index import TABLE_NAME, lance_path
from nft_pipeline.samples.nft1000_mini import generated_collections
from nft_pipeline.storage import DataLayout
from tests.components import require_component, require_module
from tests.daemon_stack import PARTITIONED_STEPS, daemon_stack, run_stages
from tests.postgres_cluster import pg_bin_dir

COLLECTIONS = 20


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_twenty_generated_collections_through_the_daemon(tmp_path):
    require_component("PostgreSQL server binaries (initdb, pg_ctl)", pg_bin_dir() is not None, "scripts/test-setup.sh installs them")
    require_module("dagster_postgres", "dagster-postgres", "the test extra installs it (make install)")
    collections = generated_collections(COLLECTIONS)
    with daemon_stack(tmp_path, COLLECTIONS, max_concurrent_runs=4) as stack:
        stages = run_stages(stack, COLLECTIONS, epochs=1, max_examples=200, refresh_share=0.01, timeout=3000)
        by_name = {stage.name: stage for stage in stages}
        for stage in stages:
            assert not stage.failed, (stage.name, [(run.run_id, run.status) for run in stage.failed])
        assert sorted(stack.partitions()) == sorted(collections)
        backfill = by_name["backfill"]
        assert sorted(p for run in backfill.runs for p in run.partitions) == sorted(collections)
        assert len(backfill.runs) < len(collections)  # several collections a run (assets/batching.py)
        for step in PARTITIONED_STEPS:
            assert stack.materialized(step) == set(collections), step
        assert [run.assets for run in by_name["training"].runs] == [{"clip_model"}]
        assert stack.materialized("nft_index") == set(collections)
        assert [run.assets for run in by_name["report"].runs] == [{"cvi_report"}]

        refresh = by_name["refresh"]
        assert sorted(p for run in refresh.runs if "tokens" in run.assets for p in run.partitions) == sorted(collections)
        grown = refresh.notes["grown"]
        assert sum(grown.values()) == refresh.notes["new_tokens"] >= 1
        new_files, new_images = set(), set()
        for slug, extra in grown.items():
            collection = collections[slug]
            for token in range(collection.default_supply, collection.default_supply + extra):
                image = collection.image_uri(token)
                new_files |= {collection.token_uri(token).removeprefix("ipfs://"), image.removeprefix("ipfs://")}
                if image.startswith("ipfs://") and collection.fault_of(token) is None:
                    new_images.add(image.removeprefix("ipfs://"))
        fetched = set(refresh.notes["ipfs_fetched"])
        assert new_images <= fetched <= new_files  # every new image, and only the new tokens' files

        layout = DataLayout(tmp_path / "data")
        ok_images = layout.query("SELECT count(*) FROM {standardized_images} WHERE status = 'ok'").column(0)[0].as_py()
        indexed = lancedb.connect(lance_path(layout.root)).open_table(TABLE_NAME).count_rows()
        assert indexed == ok_images > 0
