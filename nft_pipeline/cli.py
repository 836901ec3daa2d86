"""The `nft-pipeline` command: run the sample gateway or the whole pipeline on the samples, and search the result."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

from nft_pipeline.reporting import text_table
from nft_pipeline.storage import DataLayout, default_data_dir
from nft_pipeline.web import add_search_commands

DEMO_SUMMARY_SQL = """
WITH t AS (
    SELECT collection, count(*) AS tokens,
           count(*) FILTER (WHERE metadata_status NOT IN ('ok', 'recovered')) AS metadata_failed
    FROM {tokens} GROUP BY collection
), m AS (
    SELECT collection, count(*) FILTER (WHERE status = 'ok') AS media_ok,
           count(*) FILTER (WHERE status <> 'ok') AS media_failed, round(sum(bytes) / 1e6, 1) AS media_mb
    FROM {raw_media} GROUP BY collection
), i AS (
    SELECT collection, count(*) FILTER (WHERE status = 'ok') AS images_ok,
           count(*) FILTER (WHERE status <> 'ok') AS images_failed
    FROM {standardized_images} GROUP BY collection
), c AS (
    SELECT collection, count(*) AS captions, count(*) FILTER (WHERE shortened) AS shortened FROM {captions} GROUP BY collection
), p AS (
    SELECT collection, count(*) FILTER (WHERE status = 'ok') AS components_ok, count(*) AS traits
    FROM {components} GROUP BY collection
)
SELECT * FROM t LEFT JOIN m USING (collection) LEFT JOIN i USING (collection)
     LEFT JOIN c USING (collection) LEFT JOIN p USING (collection) ORDER BY collection
"""


DEMO_MODEL_SQL = """
SELECT c.collection, c.in_training, c.model, c.n_pairs, round(c.cvi, 6) AS cvi, round(c.top1, 3) AS top1,
       round(c.top5, 3) AS top5, round(c.top10, 3) AS top10
FROM {cvi_report} c ORDER BY c.collection, c.model DESC
"""


def _gateway(args: argparse.Namespace) -> None:
    from nft_pipeline.gateway import serve_forever
    from nft_pipeline.samples import sample_collections

    supplies = dict(item.split("=", 1) for item in args.supply)
    collections = sample_collections()
    if args.generated:
        from nft_pipeline.samples.nft1000_mini import generated_collections, write_catalog

        generated = generated_collections(args.generated, args.seed)
        catalog = write_catalog(generated, args.catalog or default_data_dir() / f"nft1000-mini-{args.generated}.csv")
        collections.update(generated)
        tokens = sum(c.default_supply for c in generated.values())
        print(f"{len(generated)} generated collections, {tokens:,} tokens; their catalog: {catalog}", flush=True)
    if args.copycat:
        from nft_pipeline.samples.copycat import CopycatPunks, write_copycat_catalog

        copycat = CopycatPunks(args.copycat, args.seed)
        catalog = write_copycat_catalog(copycat, args.catalog or default_data_dir() / f"samples-copycat-{args.copycat}.csv")
        collections[copycat.slug] = copycat
        print(f"{copycat.slug}: {args.copycat} altered CryptoPunks; the samples' catalog with it: {catalog}", flush=True)
    serve_forever(args.host, args.port, {slug: int(n) for slug, n in supplies.items()}, collections)


def _demo(args: argparse.Namespace) -> None:
    from nft_pipeline.definitions import run_pipeline
    from nft_pipeline.gateway import SampleGateway, running_gateway

    layout = DataLayout(default_data_dir())
    supplies = {"nouns": args.nouns} if args.nouns else None
    started = time.perf_counter()
    with running_gateway(SampleGateway(supplies=supplies)) as gateway:
        print(f"sample gateway on {gateway.base_url}; data in {layout.root}")
        partitions = run_pipeline(gateway.base_url, layout.root, args.collection or None)
    print(f"\nmaterialized {len(partitions)} collection(s) in {time.perf_counter() - started:.1f} s\n")
    print(text_table(layout.query(DEMO_SUMMARY_SQL).to_pylist()))
    print("\n" + text_table(layout.query(DEMO_MODEL_SQL).to_pylist()))
    print('\nsearch it: nft-pipeline search "female with blonde bob" -k 10, or nft-pipeline serve for the web page')


def _download(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from nft_pipeline.download import DownloadSettings, download_collection_media
    from nft_pipeline.http_client import gateway_limits

    layout = DataLayout(default_data_dir())
    settings = DownloadSettings(retry_failed=args.retry_failed)
    with tqdm(desc=f"{args.collection} media", unit="file") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        _, report = download_collection_media(layout, args.collection, settings, gateway_limits(args.gateway_url), progress)
    print(text_table([{"status": k, "rows": v} for k, v in sorted(report.status_counts.items())]))
    print(f"fetched {report.fetched}, reused {report.reused}, {report.files_per_second:.0f} files/s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nft-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gateway = commands.add_parser("gateway", help="serve the sample collections (Alchemy v3 + IPFS shapes)")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8765)
    gateway.add_argument("--supply", action="append", default=[], metavar="SLUG=N", help="override a supply")
    gateway.add_argument("--generated", type=int, default=0, metavar="N", help="also serve N generated collections (NFT1000 in miniature)")
    gateway.add_argument("--seed", type=int, default=0, help="seed of the generated collections")
    gateway.add_argument("--catalog", type=Path, help="where to write their catalog CSV (default: <data dir>/nft1000-mini-N.csv)")
    gateway.add_argument("--copycat", type=int, default=0, metavar="N", help="also serve N altered CryptoPunks under another contract (clone detection)")
    gateway.set_defaults(run=_gateway)

    download = commands.add_parser("download", help="fetch one collection's media (its tokens table must exist)")
    download.add_argument("collection")
    download.add_argument("--gateway-url", default=os.environ.get("NFT_PIPELINE_GATEWAY_URL", "http://127.0.0.1:8765"))
    download.add_argument("--retry-failed", action="store_true", help="fetch failed rows again")
    download.set_defaults(run=_download)

    demo = commands.add_parser("demo", help="start the gateway and materialize every asset for the samples")
    demo.add_argument("--collection", action="append", help="only these partitions (default: all)")
    demo.add_argument("--nouns", type=int, default=None, help="Nouns supply (default: the gateway's)")
    demo.set_defaults(run=_demo)

    add_search_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
