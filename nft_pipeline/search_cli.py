"""`nft-pipeline search`: the search library's terminal front end (a table of hits)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from nft_pipeline.index import IndexMissing
from nft_pipeline.reporting import text_table
from nft_pipeline.hits import SearchError, SearchResults, TokenKey
from nft_pipeline.search import NftSearch
from nft_pipeline.storage import default_data_dir

def _split_token(text: str) -> TokenKey:
    collection, separator, token_id = text.rpartition("/")
    if not separator or not collection or not token_id:
        raise SearchError(f"--similar-to takes COLLECTION/TOKEN_ID, e.g. cryptopunks/1234, got {text!r}")
    return collection, token_id


async def _run_search(args: argparse.Namespace) -> SearchResults:
    # `--trait Type=Female 2` arrives as ["Type=Female", "2"]: the words after the flag are one trait.
    traits = [" ".join(words) for words in args.trait]
    search = await NftSearch.open(args.data_dir or default_data_dir(), args.model_dir)
    if args.similar_to:
        collection, token_id = _split_token(args.similar_to)
        return await search.similar_to_token(collection, token_id, args.k, args.collection, traits)
    if args.similar_to_image:
        return await search.similar_to_image(args.similar_to_image, args.k, args.collection, traits)
    if args.query is None:
        raise SearchError("give a query, --similar-to COLLECTION/TOKEN_ID or --similar-to-image PATH")
    if args.hybrid or args.plain:
        return await search.text(args.query, args.k, args.collection, traits, args.hybrid)
    return await search.described(args.query, args.k, collection=args.collection, traits=traits, facets=False)


def results_table(results: SearchResults) -> str:
    """The hits as an aligned terminal table: rank, score, collection, token_id, name, caption."""
    return text_table(
        [
            {
                "rank": hit.rank,
                "score": f"{hit.score:.4f}",
                "collection": hit.collection,
                "token_id": hit.token_id,
                "name": hit.name or "",
                "caption": hit.caption,
            }
            for hit in results.hits
        ]
    )


def search_command(args: argparse.Namespace) -> None:
    """`nft-pipeline search`: print the hits as a table; bad input prints why and exits with status 2."""
    try:
        results = asyncio.run(_run_search(args))
    except (SearchError, IndexMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(results_table(results))  # first, so scripts can read the header from line 1
    if results.interpretation is not None and results.interpretation["chips"]:
        understood = ", ".join(
            ("NOT " if chip["negated"] else "") + chip["label"] for chip in results.interpretation["chips"]
        )
        print(f"\nunderstood: {understood}")
    for notice in results.notices:
        print(f"note: {notice}")
    timings = results.timings_ms
    print(
        f"\n{len(results.hits)} results in {timings['total']:.1f} ms "
        f"(encode {timings['encode']:.1f} ms, search {timings['search']:.1f} ms)"
    )
