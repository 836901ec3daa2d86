"""The `nft-pipeline` command: run the sample gateway, or the whole pipeline on the samples."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from nft_pipeline.reporting import text_table
from nft_pipeline.storage import DataLayout, default_data_dir

DEMO_SUMMARY_SQL = """
WITH t AS (
    SELECT collection,
           count(*) AS tokens,
           count(*) FILTER (WHERE metadata_status IN ('ok', 'recovered')) AS with_metadata,
           count(*) FILTER (WHERE metadata_source = 'token_uri') AS via_token_uri,
           count(*) FILTER (WHERE metadata_status NOT IN ('ok', 'recovered')) AS metadata_failed,
           sum(len(attributes))::BIGINT AS attributes
    FROM {tokens} GROUP BY collection
), m AS (
    SELECT collection,
           count(*) FILTER (WHERE status = 'ok') AS media_ok,
           count(*) FILTER (WHERE status <> 'ok') AS media_failed,
           round(sum(bytes) / 1e6, 1) AS media_mb
    FROM {raw_media} GROUP BY collection
)
SELECT * FROM t LEFT JOIN m USING (collection) ORDER BY collection
"""


def _gateway(args: argparse.Namespace) -> None:
    from nft_pipeline.gateway import serve_forever

    supplies = dict(item.split("=", 1) for item in args.supply)
    serve_forever(args.host, args.port, {slug: int(n) for slug, n in supplies.items()})


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nft-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gateway = commands.add_parser("gateway", help="serve the sample collections (Alchemy v3 + IPFS shapes)")
    gateway.add_argument("--host", default="127.0.0.1")
    gateway.add_argument("--port", type=int, default=8765)
    gateway.add_argument("--supply", action="append", default=[], metavar="SLUG=N", help="override a supply")
    gateway.set_defaults(run=_gateway)

    demo = commands.add_parser("demo", help="start the gateway and materialize every asset for the samples")
    demo.add_argument("--collection", action="append", help="only these partitions (default: all)")
    demo.add_argument("--nouns", type=int, default=None, help="Nouns supply (default: the gateway's)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
