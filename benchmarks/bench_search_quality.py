"""Search quality on natural queries: precision@10, right-collection share and latency, three rankings in one run.

The queries are how people describe tokens, not the captions' template, generated from the indexed
tokens' own traits plus hand-written ones (`natural_queries.py`, shared with
`experiment_masking.py`). A hit is relevant when its token carries every trait the query names.

Every query goes through the web API as the page sends it (`GET /api/search?q=...&k=10`, a real
aiohttp server on 127.0.0.1), in three modes, on the same index in the same run:

- old default: `mode=embedding`, the query's text embedding alone (what the page did before);
- hybrid: `hybrid=1`, the embedding fused with BM25 over the captions;
- new default: no flag, the described search (traits read from the query, then the embedding).

Printed: a markdown table per mode (precision@10 on queries with at least 10 relevant tokens, the
same capped at the number relevant on all queries, the right-collection share, p50/p95 latency end
to end), per collection, and the canonical-caption retrieval of the same model (text -> image
recall@1/@10 of a token's own caption, the paper's protocol) for docs/experiments.md.

    python benchmarks/bench_search_quality.py --data-dir /work/demo-data      # the demo index (read only)
    python benchmarks/bench_search_quality.py --data-dir data --queries 300 --show-failures 20
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import lancedb
from aiohttp.test_utils import TestServer

from benchmarks.natural_queries import Query, Token, generated_queries, hand_queries, relevant
from nft_pipeline.index import TABLE_NAME, lance_path
from nft_pipeline.search import NftSearch
from nft_pipeline.web.app import IMAGES_DIR, create_app

MODES = {"old default (embedding)": {"mode": "embedding"}, "hybrid": {"hybrid": "1"}, "new default": {}}


def load_tokens(data_dir: Path) -> list[Token]:
    table = lancedb.connect(lance_path(data_dir)).open_table(TABLE_NAME)
    rows = table.to_arrow().select(["collection", "token_id", "tags"]).to_pylist()
    return [
        Token(r["collection"], r["token_id"], frozenset((t["trait_type"] or "", t["value"]) for t in r["tags"]))
        for r in rows
    ]

# ------------------------------------------------------------------ measuring


@dataclass
class Outcome:
    query: Query
    n_relevant: int
    hits: list[tuple[str, str]]
    relevant_hits: int
    right_collection: int
    latency_ms: float


async def run_mode(client: aiohttp.ClientSession, queries: list[Query], params: dict, index: dict, counts: dict) -> list[Outcome]:
    outcomes = []
    for query in queries:
        started = time.perf_counter()
        async with client.get("/api/search", params={"q": query.text, "k": "10", **params}) as response:
            body = await response.json()
        latency = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"{query.text!r}: {body}")
        hits = [(hit["collection"], hit["token_id"]) for hit in body["hits"]]
        relevant_hits = sum(relevant(index[key], query) for key in hits)
        right = sum(collection == query.collection for collection, _ in hits)
        outcomes.append(Outcome(query, counts[query], hits, relevant_hits, right, latency))
    return outcomes


def summary(outcomes: list[Outcome]) -> dict[str, float]:
    full = [o for o in outcomes if o.n_relevant >= 10]
    return {
        "queries": len(outcomes),
        "p@10 (R>=10)": statistics.fmean(o.relevant_hits / 10 for o in full) if full else float("nan"),
        "p@10 capped": statistics.fmean(o.relevant_hits / min(10, o.n_relevant) for o in outcomes if o.n_relevant),
        "right collection": sum(o.right_collection for o in outcomes) / max(1, sum(len(o.hits) for o in outcomes)),
        "p50 ms": statistics.median(o.latency_ms for o in outcomes),
        "p95 ms": statistics.quantiles([o.latency_ms for o in outcomes], n=20)[-1],
    }


def markdown(rows: list[tuple[str, dict[str, float]]]) -> str:
    columns = list(rows[0][1])
    lines = ["| mode | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, values in rows:
        cells = [f"{v:.0f}" if c == "queries" else f"{v:.2f}" if "p@" in c or "collection" in c else f"{v:.1f}" for c, v in values.items()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def caption_retrieval(client: aiohttp.ClientSession, tokens: list[Token], data_dir: Path, sample: int, seed: int) -> dict[str, float]:
    """Recall@1/@10 of a token's own canonical caption in the embedding mode (the paper's protocol)."""
    table = lancedb.connect(lance_path(data_dir)).open_table(TABLE_NAME)
    rows = table.to_arrow().select(["collection", "token_id", "caption"]).to_pylist()
    picked = random.Random(seed).sample(rows, min(sample, len(rows)))
    at1 = at10 = 0
    for row in picked:
        async with client.get("/api/search", params={"q": row["caption"], "k": "10", "mode": "embedding"}) as response:
            hits = [(h["collection"], h["token_id"]) for h in (await response.json())["hits"]]
        key = (row["collection"], row["token_id"])
        at1 += hits[:1] == [key]
        at10 += key in hits
    return {"captions": len(picked), "recall@1": at1 / len(picked), "recall@10": at10 / len(picked)}


async def main_async(args: argparse.Namespace) -> None:
    tokens = load_tokens(args.data_dir)
    index = {(t.collection, t.token_id): t for t in tokens}
    queries = hand_queries(tokens) + generated_queries(tokens, args.queries, args.seed)
    counts = {q: sum(relevant(t, q) for t in tokens) for q in queries}
    search = await NftSearch.open(args.data_dir)
    server = TestServer(create_app(search, args.data_dir / IMAGES_DIR), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(server.make_url("")) as client:
            for query in queries[:5]:  # warm up every mode's path once
                for params in MODES.values():
                    await client.get("/api/search", params={"q": query.text, "k": "10", **params})
            results = {name: await run_mode(client, queries, params, index, counts) for name, params in MODES.items()}
            captions = await caption_retrieval(client, tokens, args.data_dir, args.captions, args.seed)
    finally:
        await server.close()
    print(f"{len(queries)} queries ({sum(q.source == 'hand' for q in queries)} hand-written), "
          f"{sum(counts[q] >= 10 for q in queries)} with at least 10 relevant tokens; {len(tokens)} tokens indexed\n")
    print(markdown([(name, summary(outcomes)) for name, outcomes in results.items()]))
    for collection in sorted({q.collection for q in queries}):
        print(f"\n{collection}:\n")
        print(markdown([(name, summary([o for o in outcomes if o.query.collection == collection])) for name, outcomes in results.items()]))
    print("\nhand-written only:\n")
    print(markdown([(name, summary([o for o in outcomes if o.query.source == "hand"])) for name, outcomes in results.items()]))
    print(f"\ncanonical captions, embedding mode: {captions}")
    if args.show_failures:
        worst = sorted(results["new default"], key=lambda o: o.relevant_hits / max(1, min(10, o.n_relevant)))
        print("\nworst queries of the new default (relevant hits / min(10, relevant tokens)):")
        for outcome in worst[: args.show_failures]:
            print(f"  {outcome.relevant_hits}/{min(10, outcome.n_relevant)} (R={outcome.n_relevant}) {outcome.query.text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="a data directory with a built index")
    parser.add_argument("--queries", type=int, default=240, help="generated queries (hand-written ones are added)")
    parser.add_argument("--captions", type=int, default=300, help="canonical captions for the paper's protocol")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--show-failures", type=int, default=0, help="list the new default's worst N queries")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
