"""The Dagster UI on the real workspace: every asset, edge and partition, and what a person sees.

`dagster-webserver -w workspace.yaml` runs as its own process against a temporary `DAGSTER_HOME`
(a copy of the repository's `dagster.yaml`), after `collections` has been materialized against
the sample gateway so that the collection partitions exist. GraphQL must list every asset of the
`Definitions` with exactly its upstream keys, its partitions and pools, the job, the schedule, and
the sensors, running. Headless Chromium, driven over the DevTools protocol, then screenshots the global asset
lineage (all groups expanded) and the launch dialog of `tokens` with the `cryptopunks` partition
selected, and launches that run from the dialog: it must be queued for exactly that partition.

Screenshots go to `test-artifacts/`; with `NFT_PIPELINE_UPDATE_DOC_IMAGES=1` they are also copied
to `docs/img/ui_asset_graph.png` and `docs/img/ui_backfill.png`.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
import requests
from PIL import Image, ImageStat

from assets import ingest
from assets.automation import PIPELINE_JOB
from assets.partitions import collection_partitions
from nft_pipeline.definitions import defs
from nft_pipeline.gateway import SampleGateway, running_gateway
from resources import local_resources
from tests.chromium import DevTools, chromium_page
from tests.conftest import ARTIFACTS
from tests.test_backfill_cli import dagster_home, free_port, stop, wait_for_port

REPO = Path(__file__).resolve().parent.parent
DOC_IMAGES = REPO / "docs" / "img"
SLUGS = ["cryptopunks", "nouns", "mixedmedia"]
# Wide enough that the fitted lineage graph is drawn with full asset cards, not the zoomed-out minimal boxes.
GRAPH_VIEWPORT = (2200, 1240)
DIALOG_VIEWPORT = (1600, 1000)


@dataclass(frozen=True)
class Ui:
    url: str
    env: dict[str, str]
    log: Path

    def graphql(self, query: str) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


def wait_for_workspace(ui: Ui, process: subprocess.Popen, timeout: float = 150) -> None:
    """Until `/server_info` answers and the code location has loaded (or failed to)."""
    deadline = time.monotonic() + timeout
    query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    while time.monotonic() < deadline:
        assert process.poll() is None, f"dagster-webserver exited:\n{ui.log.read_text()[-4000:]}"
        try:
            requests.get(f"{ui.url}/server_info", timeout=5).raise_for_status()
            entries = ui.graphql(query)["workspaceOrError"]["locationEntries"]
        except (requests.RequestException, KeyError):
            time.sleep(1)
            continue
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            errors = [
                e["locationOrLoadError"] for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"
            ]
            assert not errors, errors
            return
        time.sleep(1)
    raise TimeoutError(f"the workspace did not load in {timeout} s:\n{ui.log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[Ui]:
    root = tmp_path_factory.mktemp("ui")
    env = dagster_home(root)
    port = free_port()
    log = root / "webserver.log"
    args = [
        sys.executable,
        "-m",
        "dagster_webserver",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        str(REPO / "workspace.yaml"),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        # While the webserver and its code server start: register the partitions the real way.
        gateway = SampleGateway(supplies={"cryptopunks": 50, "nouns": 10, "mixedmedia": 10})
        with (
            mock.patch.dict(os.environ, env),
            running_gateway(gateway) as running,
            dg.DagsterInstance.get() as instance,
        ):
            resources = local_resources(running.base_url, Path(env["NFT_PIPELINE_DATA"]))
            assert dg.materialize([ingest.collections], instance=instance, resources=resources).success
            assert instance.get_dynamic_partitions(collection_partitions.name) == SLUGS
        ui = Ui(f"http://127.0.0.1:{port}", env, log)
        wait_for_port(port, process, timeout=150)
        wait_for_workspace(ui, process)
        yield ui
    finally:
        stop(process)


def test_ui_lists_every_asset_edge_partition_and_automation(ui):
    nodes = ui.graphql(
        "{ assetNodes { assetKey { path } dependencyKeys { path } isPartitioned partitionKeys pools } }"
    )["assetNodes"]
    seen = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    graph = defs.resolve_asset_graph()
    expected = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
    assert sorted(seen) == sorted(expected)
    for name, node in expected.items():
        shown = seen[name]
        assert sorted("/".join(d["path"]) for d in shown["dependencyKeys"]) == sorted(
            k.to_user_string() for k in node.parent_keys
        ), name
        assert shown["isPartitioned"] == node.is_partitioned, name
        assert shown["partitionKeys"] == (SLUGS if node.is_partitioned else []), name
        assert set(shown["pools"]) == set(node.pools or ()), name
    assert set(seen["raw_media"]["pools"]) == {"download"} and set(seen["clip_model"]["pools"]) == {"training"}

    repos = ui.graphql(
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } schedules { name cronSchedule }"
        " sensors { name sensorState { status } } } } } }"
    )["repositoriesOrError"]["nodes"]
    [repo] = repos
    assert PIPELINE_JOB in {j["name"] for j in repo["jobs"]}
    assert repo["schedules"] == [{"name": "daily_refresh", "cronSchedule": "0 4 * * *"}]
    sensors = {sensor["name"]: sensor["sensorState"]["status"] for sensor in repo["sensors"]}
    # Both run without anyone turning them on: the index follows refreshes and new models by itself.
    assert sensors == {"catalog_discovery": "RUNNING", "default_automation_condition_sensor": "RUNNING"}


# --- the UI in headless Chromium (tests/chromium.py) ----------------------------------------------

CLICK_JS = """(label) => {
  const el = Array.from(document.querySelectorAll('button, a, [role=menuitem]')).find(
    (b) => b.innerText.trim() === label || b.querySelector(`[aria-label="${label}"]`));
  if (!el) return false;
  el.click();
  return true;
}"""


async def click_button(page: DevTools, label: str) -> None:
    """Dagster's buttons by their text or icon label (their CSS classes are generated)."""
    assert await page.evaluate(f"({CLICK_JS})({json.dumps(label)})"), f"no button {label!r}"


def assert_not_blank(png: bytes, name: str) -> None:
    """A rendered page has many colours and no colour covering nearly all of it."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 24)
    dominant = max(count for count, _ in colours) / (image.width * image.height)
    spread = max(ImageStat.Stat(image).stddev)
    assert len(colours) >= 200 and dominant < 0.95 and spread > 8, (
        f"{name} looks blank: {len(colours)} colours, dominant {dominant:.2f}, stddev {spread:.1f}"
    )


def publish(path: Path, doc_name: str) -> None:
    if os.environ.get("NFT_PIPELINE_UPDATE_DOC_IMAGES") == "1":
        shutil.copyfile(path, DOC_IMAGES / doc_name)


def test_ui_asset_graph_and_partition_launch_dialog(ui, tmp_path):
    ui.graphql("mutation { setNuxSeen }")  # the newsletter pop-up shown once on localhost
    shots = ARTIFACTS / "ui"
    graph = defs.resolve_asset_graph()
    asset_names = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    all_cards = " && ".join(f"text.includes({json.dumps(n)})" for n in asset_names)
    # With seven groups Dagster may keep the groups collapsed (one card per group and its count).
    group_names = sorted({graph.get(k).group_name for k in graph.get_all_asset_keys()})
    all_groups = " && ".join(f"text.includes({json.dumps(n)})" for n in group_names)

    async def steps() -> None:
        async with chromium_page(tmp_path / "profile") as page:
            await page.open(f"{ui.url}/asset-groups", GRAPH_VIEWPORT)
            await page.wait_for(
                "document.body && document.body.innerText.includes('Global asset lineage') && !!document.querySelector('[aria-label=zoom_in]')"
            )
            await asyncio.sleep(1)
            await click_button(page, "Hide navigation")
            await click_button(page, "panel_show_right")  # the group tree beside the graph
            for _ in range(2):  # Alt+E toggles "expand all groups"; groups start collapsed
                await page.evaluate(
                    "document.dispatchEvent(new KeyboardEvent('keydown', {code: 'KeyE', key: 'e', altKey: true, bubbles: true})); 1"
                )
                try:
                    await page.wait_for(
                        f"(() => {{ const text = document.body.innerText; return {all_cards}; }})()", timeout=20
                    )
                    await page.wait_for("document.body.innerText.includes('Materialized')")  # collections' status is drawn
                    break
                except TimeoutError:
                    continue
            else:  # still collapsed: every group's card, and so every asset in a group, is drawn
                await page.wait_for(f"(() => {{ const text = document.body.innerText; return {all_groups}; }})()", timeout=30)
            await asyncio.sleep(2)  # edges and fit-to-view animation
            assert_not_blank(await page.screenshot(shots / "asset_graph.png"), "the asset graph")

            await page.open(f"{ui.url}/assets/tokens?view=partitions&partition=cryptopunks", DIALOG_VIEWPORT)
            await page.wait_for("document.body && document.body.innerText.includes('mixedmedia')")
            await click_button(page, "Materialize…")
            await page.wait_for(
                "(() => { const d = document.querySelector('[role=dialog]'); return d && d.innerText.includes('Launch 1 run'); })()"
            )
            dialog = await page.evaluate("document.querySelector('[role=dialog]').innerText")
            assert "Launch runs to materialize tokens" in dialog and "Partition selection" in dialog
            assert "cryptopunks" in dialog and "nouns" not in dialog and "1 partition" in dialog
            await asyncio.sleep(1)
            assert_not_blank(await page.screenshot(shots / "backfill_dialog.png"), "the launch dialog")
            await click_button(page, "Launch 1 run")
            await page.wait_for("!document.querySelector('[role=dialog]')")

    asyncio.run(asyncio.wait_for(steps(), timeout=150))
    publish(shots / "asset_graph.png", "ui_asset_graph.png")
    publish(shots / "backfill_dialog.png", "ui_backfill.png")

    # The dialog's run was queued (no daemon runs here) for exactly that asset and partition.
    runs = ui.graphql(
        '{ runsOrError(filter: {tags: [{key: "dagster/partition", value: "cryptopunks"}]}) '
        "{ ... on Runs { results { status assetSelection { path } tags { key value } } } } }"
    )["runsOrError"]["results"]
    assert len(runs) == 1, runs
    [run] = runs
    assert run["status"] == "QUEUED" and run["assetSelection"] == [{"path": ["tokens"]}]
