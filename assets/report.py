"""The `cvi_report` asset: CVI and within-collection retrieval per collection, zero-shot and fine-tuned."""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa

from assets.checks import check_result, check_spec
from assets.images import standardized_images
from assets.model import clip_model
from assets.partitions import collection_partitions
from assets.table_metadata import image_markdown, table_metadata
from assets.text import captions
from nft_pipeline import schemas
from nft_pipeline.quality import all_finite
from nft_pipeline.reporting import markdown_table
from nft_pipeline.storage import read_table, write_table
from nft_pipeline.train.config import TrainConfig
from resources import DataDirResource

CVI_FINITE = check_spec("cvi_report", "cvi_finite", "CVI and its variance terms are finite numbers.")


class CviReportConfig(dg.Config):
    run_id: str = ""  # empty: the latest finished training run (`trained_run`, as `nft_index` picks it)
    # Empty: every collection partition, those the model was trained on and held-out ones (the
    # paper's test collections); alpha is fitted across them.
    collections: list[str] = []
    sample_size: int = 2000  # pairs per collection (fixed seed); 0: every pair
    seed: int = 0
    alpha: float = 0.7


@dg.asset(group_name="report", kinds={"parquet", "markdown"}, deps=[clip_model, standardized_images, captions], check_specs=[CVI_FINITE])
def cvi_report(context: dg.AssetExecutionContext, config: CviReportConfig, data_dir: DataDirResource) -> dg.MaterializeResult:
    """Per collection and model: n pairs, CVI (alpha 0.7), its three terms, text-to-image top-1/5/10."""
    # torch, transformers and matplotlib load here, in the step that embeds and plots, not with the code location.
    from nft_pipeline.cvi_report import CVI_REPORT, collection_rows, write_report
    from nft_pipeline.train.tables import trained_run, training_examples

    layout = data_dir.layout()
    run = trained_run(layout, config.run_id)
    known = sorted(context.instance.get_dynamic_partitions(collection_partitions.name))
    unknown = sorted(set(config.collections) - set(known))
    if unknown or not known:
        raise dg.Failure(f"no collection partition named {unknown}" if unknown else "no collections: materialize `collections` first")
    slugs = config.collections or known
    images = pa.concat_tables([read_table(layout.partition_path("standardized_images", s), schemas.STANDARDIZED_IMAGES) for s in slugs])
    texts = pa.concat_tables([read_table(layout.partition_path("captions", s), schemas.CAPTIONS) for s in slugs])
    by_collection: dict = {}
    for example in training_examples(images, texts):
        by_collection.setdefault(example.collection, []).append(example)
    base = layout.root / "models" / run["run_id"] / "base"
    models = {"zero_shot": base if base.exists() else run["base_model"], "fine_tuned": Path(run["model_dir"])}
    train_config = TrainConfig.from_dict(json.loads(run["config_json"]))
    table = collection_rows(
        models, run["run_id"], by_collection, layout.root / "cvi_work" / run["run_id"], train_config,
        config.sample_size or None, config.seed, config.alpha, trained_on=run["collections"],
    )
    path = write_table(table, layout.table_path("cvi_report"), CVI_REPORT)
    report = write_report(table, layout.root / "reports" / "cvi")
    summary = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items() if k in ("collection", "in_training", "model", "n_pairs", "cvi", "top1", "top5", "top10")} for r in table.to_pylist()]
    metadata = table_metadata(table, path, best_alpha=report["alpha"], report=dg.MetadataValue.path(str(report["report"])))
    metadata["preview"] = dg.MetadataValue.md(markdown_table(summary))
    metadata["cvi_vs_top1"] = image_markdown(report["scatter"].read_bytes(), "CVI vs top-1")
    if report["curve"] is not None:
        metadata["jsd_vs_alpha"] = image_markdown(report["curve"].read_bytes(), "JSD vs alpha")
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[check_result(CVI_FINITE, all_finite(table, ["cvi", "var_ii", "var_tt", "var_ti"]))],
    )
