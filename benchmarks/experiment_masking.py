"""The masking ablation with NFT1000's training options: masking, component pairs and WiSE-FT.

Issue 6 asked whether masking a trait's pixels and words helps retrieval; issue 19 adds the
paper's other two options: component pairs as extra training pairs (`--settings mode:p:share`)
and WiSE-FT, whose interpolated model (`--alpha`) is evaluated in every run beside the
fine-tuned one at no extra training. A setting may end in `:phrasings` (train on drawn phrasings
of the tags instead of the canonical caption, `TrainConfig.caption_phrasings`). The tiny preset, a
`by_token` split, the same budget for every row (epochs, batch size, learning rate, schedule) and
several seeds, averaged over the seeds (and each seed's value). Two metrics on the test split,
each for the zero-shot, fine-tuned and interpolated models:

- the caption protocol (the paper's): text-to-image top-1/5 of a token's own canonical caption;
- natural queries (issue #15's): queries generated from the test tokens' traits as
  `bench_search_quality.py` generates them (`natural_queries.py`), precision@10 of the model's
  embedding ranking of the test tokens (relevant = carries every trait the query names).

Inputs: a data directory the pipeline filled (`--data-dir data --collection cryptopunks`, with the
components stage's components), or the bundled samples generated on the fly (`--samples N`: N
Nouns, with their ground-truth components, and N CryptoPunks, without).

    python benchmarks/experiment_masking.py --samples 150 --epochs 4 --seeds 0 1
    python benchmarks/experiment_masking.py --data-dir data --epochs 6 --max-examples 4000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.natural_queries import (
    Query,
    Token,
    chance_precision,
    generated_queries,
    hand_queries,
    precision_at,
    relevant,
)
from nft_pipeline.embedding import embed_images, embed_texts
from nft_pipeline.train.checkpoint import load_checkpoint
from nft_pipeline.train.config import TrainConfig
from nft_pipeline.train.data import TrainingExample
from nft_pipeline.train.loop import CHECKPOINT_FILE, TrainingRun, train_clip
from nft_pipeline.train.model import ClipBundle, load_clip
from nft_pipeline.train.sample_data import nouns_inputs, punks_inputs

SETTINGS = ["one:0.0:0.0", "one:0.5:0.0", "one:0.0:0.2", "one:0.5:0.2"]


def pipeline_inputs(data_dir: Path, collection: str, max_examples: int | None, seed: int):
    """Examples and components of one collection from a pipeline data directory."""
    from nft_pipeline import schemas
    from nft_pipeline.cvi_report import sample_pairs
    from nft_pipeline.storage import DataLayout, read_table
    from nft_pipeline.train.tables import component_lookup, training_examples

    layout = DataLayout(data_dir.resolve())
    examples = training_examples(
        read_table(layout.partition_path("standardized_images", collection), schemas.STANDARDIZED_IMAGES),
        read_table(layout.partition_path("captions", collection), schemas.CAPTIONS),
    )
    components = component_lookup(read_table(layout.partition_path("components", collection), schemas.COMPONENTS))
    return sample_pairs(examples, max_examples, seed), components


def top_k(metrics: dict, k: int) -> float:
    return metrics["global"]["text_to_image"][f"R@{k}"]


def example_token(example: TrainingExample) -> Token:
    traits = frozenset((tag["trait_type"] or "", tag["value"]) for tag in example.caption.tags)
    return Token(example.collection, example.token_id, traits)


def split_queries(tokens: list[Token], count: int, seed: int) -> tuple[list[Query], dict[Query, int]]:
    """Hand-written queries some test token answers, and `count` generated from the test tokens."""
    queries = hand_queries(tokens) + generated_queries(tokens, count, seed)
    counts = {query: sum(relevant(token, query) for token in tokens) for query in queries}
    return [query for query in queries if counts[query]], counts


def run_models(run: TrainingRun, run_dir: Path) -> dict[str, ClipBundle]:
    """The run's zero-shot (its starting weights), fine-tuned (last checkpoint) and interpolated (saved) models."""
    fine_tuned = load_clip(run_dir / "base")
    fine_tuned.model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_FILE, torch.device("cpu"))["model"])
    models = {"zero_shot": load_clip(run_dir / "base"), "fine_tuned": fine_tuned}
    if run.interpolated is not None:
        models["interpolated"] = load_clip(run.model_dir)
    return models


def natural_query_precision(
    bundle: ClipBundle, test: list[TrainingExample], queries: list[Query], counts: dict[Query, int], config: TrainConfig
) -> dict[str, float]:
    """Mean precision@10 of the embedding ranking over the test tokens, overall and per collection."""
    tokens = [example_token(example) for example in test]
    images = embed_images(bundle, [example.image_path for example in test], matte_rgb=config.matte_rgb)
    texts = embed_texts(bundle, [query.text for query in queries], config.context_length)
    order = np.argsort(-(texts @ images.T), axis=1, kind="stable")
    scores = [precision_at([tokens[i] for i in row], query, counts[query]) for row, query in zip(order, queries)]
    result = {"all": float(np.mean(scores))}
    for collection in sorted({query.collection for query in queries}):
        result[collection] = float(np.mean([s for s, q in zip(scores, queries) if q.collection == collection]))
    return result


MODELS = ("zero_shot", "fine_tuned", "interpolated")


def parse_setting(setting: str) -> dict:
    """`mode:p:share` or `mode:p:share:phrasings` as TrainConfig fields."""
    mode, probability, share, *rest = setting.split(":")
    if rest not in ([], ["phrasings"]):
        raise ValueError(f"{setting!r}: expected mode:p:share[:phrasings]")
    return {
        "masking_mode": mode, "masking_probability": float(probability),
        "component_pairs_share": float(share), "caption_phrasings": rest == ["phrasings"],
    }


def evaluate_run(run: TrainingRun, run_dir: Path, examples: list[TrainingExample], queries: int) -> dict:
    """Both metrics of every model of one run, globally and per collection of the test split."""
    test = run.split.select(examples, "test")
    tokens = [example_token(example) for example in test]
    split_query_list, counts = split_queries(tokens, queries, run.config.seed)
    caption_metrics = {"zero_shot": run.zero_shot, "fine_tuned": run.fine_tuned, "interpolated": run.interpolated}
    result: dict = {
        "test_pairs": len(test), "queries": len(split_query_list),
        "chance_p@10": float(np.mean([chance_precision(counts[q], len(tokens)) for q in split_query_list])),
    }
    for name, bundle in run_models(run, run_dir).items():
        metrics = caption_metrics[name]
        result[name] = {
            "caption_R@1": top_k(metrics, 1), "caption_R@5": top_k(metrics, 5),
            "per_collection_caption_R@1": {
                c: m["text_to_image"]["R@1"] for c, m in metrics["per_collection"].items()
            },
            "natural_p@10": natural_query_precision(bundle, test, split_query_list, counts, run.config),
        }
    return result


def cell(rows: list[dict], value) -> str:
    values = [value(r) for r in rows]
    return f"{statistics.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"


def print_tables(results: list[dict], settings: list[str]) -> None:
    columns = [
        ("caption top-1 zero-shot", lambda r: r["zero_shot"]["caption_R@1"]),
        ("caption top-1 fine-tuned", lambda r: r["fine_tuned"]["caption_R@1"]),
        ("caption top-1 WiSE-FT", lambda r: r["interpolated"]["caption_R@1"]),
        ("caption top-5 fine-tuned", lambda r: r["fine_tuned"]["caption_R@5"]),
        ("natural p@10 zero-shot", lambda r: r["zero_shot"]["natural_p@10"]["all"]),
        ("natural p@10 fine-tuned", lambda r: r["fine_tuned"]["natural_p@10"]["all"]),
        ("natural p@10 WiSE-FT", lambda r: r["interpolated"]["natural_p@10"]["all"]),
    ]
    print("| setting (mode:p:share) | " + " | ".join(name for name, _ in columns) + " | final train loss | steps |")
    print("|---|" + "---|" * (len(columns) + 2))
    for setting in settings:
        rows = [r for r in results if r["setting"] == setting]
        cells = [cell(rows, value) for _, value in columns]
        loss = statistics.mean(r["final_train_loss"] for r in rows)
        print(f"| {setting} | " + " | ".join(cells) + f" | {loss:.3f} | {rows[0]['steps']} |")
    collections = sorted(results[0]["fine_tuned"]["per_collection_caption_R@1"])
    print("\nper collection, mean over the seeds (caption top-1 / natural p@10), zero-shot | fine-tuned | WiSE-FT:\n")
    print("| setting | collection | " + " | ".join(f"{m} caption top-1 | {m} natural p@10" for m in MODELS) + " |")
    print("|---|---|" + "---|" * (2 * len(MODELS)))
    for setting in settings:
        rows = [r for r in results if r["setting"] == setting]
        for collection in collections:
            cells = []
            for model in MODELS:
                cells.append(f"{statistics.mean(r[model]['per_collection_caption_R@1'][collection] for r in rows):.3f}")
                cells.append(f"{statistics.mean(r[model]['natural_p@10'][collection] for r in rows):.3f}")
            print(f"| {setting} | {collection} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=0, help="N Nouns + N punks from the bundled samples")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--collection", default="cryptopunks")
    parser.add_argument("--max-examples", type=int, default=None, help="a fixed-seed sample of this many pairs")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--alpha", type=float, default=0.5, help="WiSE-FT alpha evaluated in every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--settings", nargs="+", default=SETTINGS, help="mode:p:component_share[:phrasings] per row")
    parser.add_argument("--queries", type=int, default=200, help="natural queries generated from each run's test tokens")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--model", default="tiny", help="a preset, a hub id or a model directory to start from")
    parser.add_argument(
        "--tiny-shape", type=int, nargs=4, metavar=("WIDTH", "LAYERS", "IMAGE", "PATCH"), default=None,
        help="a smaller tiny preset for short runs (default: TrainConfig's)",
    )
    parser.add_argument("--out", type=Path, required=True, help="run directories and results.json")
    args = parser.parse_args()
    if args.samples:
        nouns, noun_components = nouns_inputs(range(args.samples), args.out / "images")
        punks, punk_components = punks_inputs(range(args.samples), args.out / "images")
        examples, components, source = nouns + punks, {**noun_components, **punk_components}, "bundled Nouns + CryptoPunks"
    else:
        examples, components = pipeline_inputs(args.data_dir, args.collection, args.max_examples, 0)
        source = args.collection
    names = ("tiny_width", "tiny_layers", "tiny_image_size", "tiny_patch_size")
    shape = dict(zip(names, args.tiny_shape)) if args.tiny_shape else {}
    results = []
    for setting in args.settings:
        for seed in args.seeds:
            config = TrainConfig(
                split="by_token", epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                model_name_or_path=args.model, wise_ft_alpha=args.alpha, seed=seed, num_workers=args.num_workers,
                **parse_setting(setting), **shape,
            )
            started = time.perf_counter()
            run_dir = args.out / f"{setting.replace(':', '-')}-seed{seed}"
            run = train_clip(examples, components, config, run_dir)
            trained_minutes = (time.perf_counter() - started) / 60
            results.append({
                "setting": setting, "seed": seed, **evaluate_run(run, run_dir, examples, args.queries),
                "final_train_loss": run.epoch_metrics[-1]["train_loss"], "steps": run.steps,
                "train_minutes": round(trained_minutes, 1),
                "minutes": round((time.perf_counter() - started) / 60, 1),
            })
            print(json.dumps(results[-1]), flush=True)
    last = results[-1]
    print(
        f"\n{source}: {len(examples)} pairs, by_token split, {args.model} {shape or ''}, "
        f"{args.epochs} epochs x batch {args.batch_size}, lr {args.learning_rate}, seeds {args.seeds}; "
        f"WiSE-FT alpha {args.alpha}; {last['test_pairs']} test pairs, {last['queries']} natural queries "
        f"(chance p@10 {statistics.mean(r['chance_p@10'] for r in results):.3f}); mean (per seed)\n"
    )
    print_tables(results, args.settings)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
