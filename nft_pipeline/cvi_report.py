"""The CVI report: per collection and model, how hard its pairs are to tell apart, and retrieval.

For each collection (by default every partition: those the run trained on, and held-out ones as
the paper's test collections, marked by `in_training`) a fixed-seed sample of its (image, caption)
pairs is embedded by the zero-shot model (the run's base) and by the fine-tuned one; CVI (alpha
0.7), its three variance terms and text-to-image top-1/5/10 within the collection are recorded.
alpha is then fitted as the paper does (JSD between the L1-normalised CVI and top-1 distributions
across collections) and the report is written as markdown with two plots.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from nft_pipeline.cvi import CviResult, cvi, fit_alpha, plot_cvi_vs_top1, plot_jsd_curve
from nft_pipeline.reporting import markdown_table
from nft_pipeline.train.config import TrainConfig
from nft_pipeline.train.data import TrainingExample
from nft_pipeline.train.embed import embed_examples
from nft_pipeline.train.evaluate import retrieval_metrics
from nft_pipeline.train.model import load_clip

# A DataLoader worker is a fresh interpreter that imports torch and the model code (seconds), paid
# again for every (model, collection); it decodes a few hundred small PNGs in less. So a collection
# gets one worker per this many pairs, up to the run's count: NFT1000's many small collections
# (median ~20 tokens in `--generated`) are embedded in process.
PAIRS_PER_EVAL_WORKER = 500

CVI_REPORT = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),  # zero_shot | fine_tuned
        pa.field("in_training", pa.bool_(), nullable=False),  # the run trained on this collection (else held out)
        pa.field("model_run", pa.string(), nullable=False),
        pa.field("model_path", pa.string()),
        pa.field("n_pairs", pa.int64(), nullable=False),
        pa.field("sample_size", pa.int64()),  # the configured cap (None: every pair)
        pa.field("sample_seed", pa.int64()),
        pa.field("cvi", pa.float64()),
        pa.field("var_ii", pa.float64()),
        pa.field("var_tt", pa.float64()),
        pa.field("var_ti", pa.float64()),
        pa.field("alpha", pa.float64()),
        pa.field("top1", pa.float64()),
        pa.field("top5", pa.float64()),
        pa.field("top10", pa.float64()),
    ]
)


def sample_pairs(examples: Sequence[TrainingExample], size: int | None, seed: int) -> list[TrainingExample]:
    """A fixed-seed sample of at most `size` examples, in token order (all of them if `size` is None)."""
    ordered = sorted(examples, key=lambda e: (len(e.token_id), e.token_id))
    if size is None or len(ordered) <= size:
        return ordered
    chosen = random.Random(seed).sample(range(len(ordered)), size)
    return [ordered[i] for i in sorted(chosen)]


def collection_rows(
    models: Mapping[str, str | Path],
    run_id: str,
    by_collection: Mapping[str, Sequence[TrainingExample]],
    work_dir: Path,
    config: TrainConfig,
    sample_size: int | None,
    seed: int,
    alpha: float = 0.7,
    trained_on: Collection[str] = (),
) -> pa.Table:
    """One row per (collection, model); `models` maps zero_shot / fine_tuned to a loadable path or id,
    `trained_on` names the collections the run trained on (the others are held out)."""
    rows: list[dict[str, Any]] = []
    for model_name, path in models.items():
        bundle = load_clip(path)
        for collection, examples in sorted(by_collection.items()):
            pairs = sample_pairs(examples, sample_size, seed)
            if len(pairs) < 2:
                continue
            workers = min(config.num_workers, len(pairs) // PAIRS_PER_EVAL_WORKER)
            images, texts = embed_examples(bundle, pairs, work_dir / model_name / collection, replace(config, num_workers=workers))
            result = cvi(images.numpy(), texts.numpy(), alpha=alpha)
            recall = retrieval_metrics(images, texts, [collection] * len(pairs))["global"]["text_to_image"]
            rows.append(
                {
                    "collection": collection,
                    "in_training": collection in trained_on,
                    "model": model_name,
                    "model_run": run_id,
                    "model_path": str(path),
                    "n_pairs": len(pairs),
                    "sample_size": sample_size,
                    "sample_seed": seed,
                    "cvi": result.cvi,
                    "var_ii": result.var_ii,
                    "var_tt": result.var_tt,
                    "var_ti": result.var_ti,
                    "alpha": alpha,
                    "top1": recall["R@1"],
                    "top5": recall["R@5"],
                    "top10": recall["R@10"],
                }
            )
    return pa.Table.from_pylist(rows, schema=CVI_REPORT)


def write_report(table: pa.Table, directory: Path) -> dict[str, Any]:
    """Markdown + plots under `directory`; returns the fitted alpha and the file paths."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = table.to_pylist()
    fine = [r for r in rows if r["model"] == "fine_tuned"] or rows
    terms = {
        r["collection"]: CviResult(r["cvi"], r["var_ii"], r["var_tt"], r["var_ti"], r["n_pairs"], r["alpha"])
        for r in fine
    }
    fit = fit_alpha(terms, {r["collection"]: r["top1"] for r in fine}) if len(fine) >= 2 else None
    scatter = directory / "cvi_vs_top1.png"
    scatter.write_bytes(
        plot_cvi_vs_top1([{"collection": r["collection"], "cvi": r["cvi"], "top1": r["top1"]} for r in fine])
    )
    lines = [
        "# CVI report",
        "",
        markdown_table([{k: _fmt(v) for k, v in r.items() if k != "model_path"} for r in rows]),
        "",
    ]
    lines += ["![CVI against top-1](cvi_vs_top1.png)", ""]
    curve = None
    if fit is not None:
        curve = directory / "jsd_alpha.png"
        curve.write_bytes(plot_jsd_curve(fit))
        lines += [
            f"Best alpha by JSD: **{fit.alpha:.2f}** (divergence {fit.divergence:.4f}).",
            "",
            "![JSD vs alpha](jsd_alpha.png)",
        ]
    report = directory / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return {"alpha": fit.alpha if fit else None, "report": report, "scatter": scatter, "curve": curve}


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value
