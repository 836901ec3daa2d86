"""The search front ends: `nft-pipeline search` (a table in the terminal) and `nft-pipeline serve` (a web page).

This module only declares the two commands; their handlers import the model and the index when
they run, so registering them keeps every other `nft-pipeline` command as quick to start as before
(torch and LanceDB take seconds to import).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PORT = 8770


def _search(args: argparse.Namespace) -> None:
    from nft_pipeline.search_cli import search_command

    search_command(args)


def _serve(args: argparse.Namespace) -> None:
    from nft_pipeline.web.app import serve_command

    serve_command(args)


def _add_index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="the data directory (default: $NFT_PIPELINE_DATA or ./data)"
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="the model to encode queries with (default: the one the index was built with)",
    )


def add_search_commands(commands: argparse._SubParsersAction) -> None:
    """Register `search` and `serve` on the `nft-pipeline` subcommands."""
    search = commands.add_parser("search", help="search the index by text, by token or by image")
    search.add_argument("query", nargs="?", help='what to look for, e.g. "female with blonde bob and earring"')
    search.add_argument("-k", type=int, default=10, help="how many results (default 10, at most 100)")
    search.add_argument("--similar-to", metavar="COLLECTION/TOKEN_ID", help="tokens that look like this one")
    search.add_argument("--similar-to-image", type=Path, metavar="PATH", help="tokens that look like this image")
    search.add_argument("--collection", help="only this collection")
    search.add_argument(
        "--trait",
        action="append",
        nargs="+",
        default=[],
        metavar="TYPE=VALUE",
        help="only tokens with this trait, e.g. --trait Type=Female 2 (repeatable)",
    )
    search.add_argument(
        "--hybrid", action="store_true", help="also match the query's words in the captions (RRF fusion)"
    )
    search.add_argument(
        "--plain", action="store_true", help="rank by the text embedding alone, without reading traits from the query"
    )
    _add_index_arguments(search)
    search.set_defaults(run=_search)

    serve = commands.add_parser("serve", help="the search web page on http://127.0.0.1:PORT")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    _add_index_arguments(serve)
    serve.set_defaults(run=_serve)
