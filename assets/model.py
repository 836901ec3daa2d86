"""The `clip_model` asset: CLIP fine-tuned with dynamic masking on the selected collections."""

import io
import json

import dagster as dg
import pydantic

from assets.checks import check_result, check_spec
from assets.images import components, standardized_images
from assets.partitions import collection_partitions
from assets.table_metadata import image_markdown
from assets.text import captions
from nft_pipeline import schemas
from nft_pipeline.quality import all_finite, row_counts_match
from nft_pipeline.reporting import markdown_table
from nft_pipeline.storage import read_table, write_table
from nft_pipeline.train.config import TrainConfig, config_fields
from resources import DataDirResource

# Blocking: a broken model would poison what is built from it (the search index, the CVI report).
RUN_FINISHED = check_spec(
    "clip_model", "run_finished", "Every configured epoch was trained (a training_epochs row each) and the model saved."
)
LOSSES_FINITE = check_spec(
    "clip_model", "losses_finite", "Every epoch's training loss, and validation loss when there is a validation split, is finite."
)
FINE_TUNED_METRICS = check_spec(
    "clip_model", "fine_tuned_metrics_present", "The fine-tuned model's text-to-image R@1/5/10 on the test split are finite."
)
FINE_TUNED_COLUMNS = ["fine_tuned_t2i_r1", "fine_tuned_t2i_r5", "fine_tuned_t2i_r10"]


class _TrainingSelection(dg.Config):
    """What to train on; how is every `TrainConfig` field, added below with its default."""

    collections: list[str] = []  # empty: every collection partition
    max_examples: int = 0  # > 0: a fixed-seed sample of this many pairs (a short run, e.g. the demo)

    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.model_dump(exclude={"collections", "max_examples"}))


# Derived from TrainConfig (one field each, same default), so the asset and the library cannot drift.
ClipModelConfig = pydantic.create_model("ClipModelConfig", __base__=_TrainingSelection, **config_fields())


def _loss_curve(epochs: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3), dpi=100)
    axis.plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], marker="o", label="train")
    if any(e["val_loss"] is not None for e in epochs):
        axis.plot([e["epoch"] for e in epochs], [e["val_loss"] for e in epochs], marker="o", label="validation")
    axis.set_xlabel("epoch")
    axis.set_ylabel("contrastive loss")
    axis.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


# On Kubernetes (docs/deploy.md) training runs in a step pod on a GPU node; inert elsewhere.
GPU_K8S_CONFIG = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {
                "requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
                "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"},
            }
        },
        "pod_spec_config": {
            "node_selector": {"nft-pipeline/pool": "gpu"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }
}


@dg.asset(
    group_name="model",
    kinds={"pytorch", "parquet"},
    deps=[standardized_images, captions, components],
    check_specs=[RUN_FINISHED, LOSSES_FINITE, FINE_TUNED_METRICS],
    pool="training",
    op_tags=GPU_K8S_CONFIG,
)
def clip_model(context: dg.AssetExecutionContext, config: ClipModelConfig, data_dir: DataDirResource) -> dg.MaterializeResult:
    """Trains (or resumes) a CLIP run; writes the model directory and `training_runs`/`training_epochs` rows."""
    # torch and transformers load here, in the step that trains, not with the code location.
    from nft_pipeline.cvi_report import sample_pairs
    from nft_pipeline.train.loop import run_identity, train_clip
    from nft_pipeline.train.tables import TRAINING_EPOCHS, TRAINING_RUNS, component_lookup, run_rows, training_examples

    layout = data_dir.layout()
    slugs = config.collections or sorted(context.instance.get_dynamic_partitions(collection_partitions.name))

    def gather(table: str, schema, collections: list[str] = slugs):
        import pyarrow as pa

        return pa.concat_tables([read_table(layout.partition_path(table, slug), schema) for slug in collections])

    examples = training_examples(gather("standardized_images", schemas.STANDARDIZED_IMAGES), gather("captions", schemas.CAPTIONS), layout.location)
    if config.max_examples and len(examples) > config.max_examples:
        examples = sample_pairs(examples, config.max_examples, config.seed)
    if not examples:
        raise dg.Failure(f"no training examples in {slugs}: materialize standardized_images and captions first")
    train_config = config.train_config()
    run_id = run_identity(train_config, examples)
    context.log.info(f"run {run_id}: {len(examples)} examples from {', '.join(slugs)}")
    sampled = sorted({example.collection for example in examples})  # a short run may sample a few collections
    run = train_clip(
        examples, component_lookup(gather("components", schemas.COMPONENTS, sampled)), train_config, layout.work_dir / "models" / run_id
    )
    run_table, epoch_table = run_rows(run, slugs)
    write_table(run_table, layout.partition_path("training_runs", run.run_id), TRAINING_RUNS)
    write_table(epoch_table, layout.partition_path("training_epochs", run.run_id), TRAINING_EPOCHS)
    metric_rows = [
        {"model": name, **{k: round(v, 4) for k, v in result["global"]["text_to_image"].items()}}
        for name, result in (("zero-shot", run.zero_shot), ("fine-tuned", run.fine_tuned), ("interpolated", run.interpolated))
        if result  # no fine-tuned metrics for an unfinished run: the checks below say so
    ]
    losses = ["train_loss", "val_loss"] if run.split.val else ["train_loss"]
    return dg.MaterializeResult(
        metadata={
            "run_id": run.run_id,
            "model_dir": dg.MetadataValue.path(str(run.model_dir)),
            "examples": len(examples),
            "epochs": run.epochs,
            "steps": run.steps,
            "samples_per_second": dg.MetadataValue.float(round(run.samples_per_second, 1)),
            "retrieval": dg.MetadataValue.md(markdown_table(metric_rows)),
            "split": dg.MetadataValue.json({k: len(v) for k, v in run.split.to_dict().items() if isinstance(v, list)}),
            "masking": dg.MetadataValue.json(json.loads(json.dumps(run.masking.to_dict()))),
            "loss_curve": image_markdown(_loss_curve(run.epoch_metrics), "loss per epoch"),
        },
        check_results=[
            check_result(RUN_FINISHED, row_counts_match(epoch_table.num_rows, train_config.epochs)),
            check_result(LOSSES_FINITE, all_finite(epoch_table, losses)),
            check_result(FINE_TUNED_METRICS, all_finite(run_table, FINE_TUNED_COLUMNS)),
        ],
    )
