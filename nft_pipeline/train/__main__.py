"""`python -m nft_pipeline.train`: one training run from inputs saved with `save_training_inputs`.

Single process:   python -m nft_pipeline.train --inputs DIR --output-dir DIR [--epochs 5 ...]
Several GPUs:     torchrun --nproc_per_node 4 -m nft_pipeline.train --inputs DIR --output-dir DIR ...
(`torchrun_command` builds the second form from a TrainConfig.) Every rank runs the same call; rank
0 writes `run.json` in the output directory and prints its path.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from nft_pipeline.train.config import add_config_arguments, config_from_arguments
from nft_pipeline.train.inputs import load_components, load_examples
from nft_pipeline.train.loop import RUN_FILE, train_clip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nft_pipeline.train", description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=Path, required=True, help="directory written by save_training_inputs")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--restart", action="store_true", help="discard earlier progress in --output-dir")
    parser.add_argument("--stop-after-epoch", type=int, default=None, help="end this call after that many epochs")
    add_config_arguments(parser)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run = train_clip(
        load_examples(arguments.inputs),
        load_components(arguments.inputs),
        config_from_arguments(arguments),
        arguments.output_dir,
        resume=not arguments.restart,
        stop_after_epoch=arguments.stop_after_epoch,
    )
    if os.environ.get("RANK", "0") == "0":
        print(arguments.output_dir / RUN_FILE, f"({run.epochs} epochs, {'finished' if run.finished else 'unfinished'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
