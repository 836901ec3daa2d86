"""The masking ablation with NFT1000's training options: masking, component pairs and WiSE-FT.

Issue 6 asked whether masking a trait's pixels and words helps retrieval; issue 19 adds the
paper's other two options: component pairs as extra training pairs (`--settings mode:p:share`)
and WiSE-FT, whose interpolated model (`--alpha`) is evaluated in every run beside the
fine-tuned one at no extra training. The tiny preset, a `by_token` split, the same budget for
every row (epochs, batch size, learning rate, schedule) and several seeds; text-to-image top-1/5
on the test split, averaged over the seeds (and each seed's value).

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

from nft_pipeline.train.config import TrainConfig
from nft_pipeline.train.loop import train_clip
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
    parser.add_argument("--settings", nargs="+", default=SETTINGS, help="mode:p:component_share per row")
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
        mode, probability, share = setting.split(":")
        for seed in args.seeds:
            config = TrainConfig(
                split="by_token", epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                model_name_or_path=args.model, masking_mode=mode, masking_probability=float(probability),
                component_pairs_share=float(share), wise_ft_alpha=args.alpha, seed=seed, num_workers=args.num_workers, **shape,
            )
            started = time.perf_counter()
            run = train_clip(examples, components, config, args.out / f"{setting.replace(':', '-')}-seed{seed}")
            results.append({
                "setting": setting, "seed": seed,
                "zero_shot_R@1": top_k(run.zero_shot, 1),
                "fine_tuned_R@1": top_k(run.fine_tuned, 1), "fine_tuned_R@5": top_k(run.fine_tuned, 5),
                "interpolated_R@1": top_k(run.interpolated, 1), "interpolated_R@5": top_k(run.interpolated, 5),
                "final_train_loss": run.epoch_metrics[-1]["train_loss"], "steps": run.steps,
                "test_pairs": run.fine_tuned["global"]["count"],
                "minutes": round((time.perf_counter() - started) / 60, 1),
            })
            print(json.dumps(results[-1]), flush=True)
    print(
        f"\n{source}: {len(examples)} pairs, by_token split, {args.model} {shape or ''}, "
        f"{args.epochs} epochs x batch {args.batch_size}, "
        f"lr {args.learning_rate}, seeds {args.seeds}; text-to-image on the {results[-1]['test_pairs']} test pairs, "
        f"mean (per seed); WiSE-FT alpha {args.alpha}\n"
    )
    columns = ["fine_tuned_R@1", "fine_tuned_R@5", "interpolated_R@1", "interpolated_R@5"]
    print("| masking mode:p | component share | " + " | ".join(columns) + " | final train loss | steps |")
    print("|---|---|" + "---|" * (len(columns) + 2))
    for setting in args.settings:
        rows = [r for r in results if r["setting"] == setting]
        mode, probability, share = setting.split(":")
        cells = [
            f"{statistics.mean(r[c] for r in rows):.3f} ({', '.join(f'{r[c]:.3f}' for r in rows)})" for c in columns
        ]
        loss = statistics.mean(r["final_train_loss"] for r in rows)
        print(f"| {mode}:{probability} | {share} | " + " | ".join(cells) + f" | {loss:.3f} | {rows[0]['steps']} |")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
