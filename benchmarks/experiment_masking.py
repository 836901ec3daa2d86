"""The dynamic-masking ablation (issue 6): does masking a trait's pixels and words help retrieval?

On the bundled CryptoPunks (`by_token` split, fixed seed) with the tiny preset and the same budget
for every row (same epochs, batch size, learning rate, schedule), text-to-image top-1/5/10 on the
test split for p in {0, 0.3, 0.5, 0.7} with mode `one` (the paper's text) and p=0.5 with mode
`each` (the paper's code). p=0 is plain fine-tuning. Reads the pipeline's tables from a data
directory that `make demo` filled (standardized_images, captions and components of cryptopunks).

    python benchmarks/experiment_masking.py --data-dir data --epochs 6 --max-examples 4000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nft_pipeline import schemas
from nft_pipeline.cvi_report import sample_pairs
from nft_pipeline.storage import DataLayout, read_table
from nft_pipeline.train.config import TrainConfig
from nft_pipeline.train.loop import train_clip
from nft_pipeline.train.tables import component_lookup, training_examples

SETTINGS = [("one", 0.0), ("one", 0.3), ("one", 0.5), ("one", 0.7), ("each", 0.5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--collection", default="cryptopunks")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--settings", default=",".join(f"{mode}:{p}" for mode, p in SETTINGS), help="mode:p pairs to run, comma-separated"
    )
    parser.add_argument("--max-examples", type=int, default=None, help="a fixed-seed sample of this many pairs")
    parser.add_argument("--out", type=Path, default=None, help="run directories (default: <data-dir>/experiments/masking)")
    args = parser.parse_args()
    layout = DataLayout(args.data_dir.resolve())
    slug = args.collection
    examples = training_examples(
        read_table(layout.partition_path("standardized_images", slug), schemas.STANDARDIZED_IMAGES),
        read_table(layout.partition_path("captions", slug), schemas.CAPTIONS),
    )
    examples = sample_pairs(examples, args.max_examples, args.seed)
    components = component_lookup(read_table(layout.partition_path("components", slug), schemas.COMPONENTS))
    out = args.out or layout.root / "experiments" / "masking"
    results = []
    settings = [(mode, float(p)) for mode, p in (item.split(":") for item in args.settings.split(","))]
    for mode, probability in settings:
        config = TrainConfig(
            split="by_token", epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
            masking_mode=mode, masking_probability=probability, seed=args.seed, num_workers=2,
        )
        started = time.perf_counter()
        run = train_clip(examples, components, config, out / f"{mode}-p{probability}")
        recall = run.fine_tuned["global"]["text_to_image"]
        zero = run.zero_shot["global"]["text_to_image"]
        results.append({
            "mode": mode, "p": probability, "R@1": recall["R@1"], "R@5": recall["R@5"], "R@10": recall["R@10"],
            "zero_shot_R@1": zero["R@1"], "final_train_loss": run.epoch_metrics[-1]["train_loss"],
            "steps": run.steps, "minutes": round((time.perf_counter() - started) / 60, 1),
        })
        print(json.dumps(results[-1]), flush=True)
    test_pairs = len(run.split.to_dict()["test"])
    print(f"\n{slug}, by_token split (seed {args.seed}), tiny preset, {args.epochs} epochs x batch {args.batch_size}, "
          f"lr {args.learning_rate}; text-to-image over the {test_pairs} test pairs\n")
    print("| mode | p | top-1 | top-5 | top-10 | final train loss | steps | minutes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['p']} | {r['R@1']:.4f} | {r['R@5']:.4f} | {r['R@10']:.4f} | "
              f"{r['final_train_loss']:.3f} | {r['steps']} | {r['minutes']} |")
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
