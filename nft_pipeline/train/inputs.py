"""Training inputs on disk, so that `torchrun` processes can read what the asset built in memory.

A directory holds `examples.jsonl` (one example per line: keys, image path, caption and tags) and
one `components/<n>.npz` per collection with an `index.json` mapping each (trait_type, value) to
its arrays (or to null when the trait has no component). Components are read lazily, one array
at a time, so a run over many collections never holds every component in memory at once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nft_pipeline.captions import Caption, CaptionTemplate
from nft_pipeline.train.data import TrainingExample
from nft_pipeline.train.prepared import Component, ComponentLookup, Trait

EXAMPLES_FILE = "examples.jsonl"
COMPONENTS_DIR = "components"
INDEX_FILE = "index.json"


def caption_to_json(caption: Caption) -> dict[str, Any]:
    """Every field, the template included, so `remove_tag` can re-render the caption after loading."""
    return dataclasses.asdict(caption)


def caption_from_json(values: dict[str, Any]) -> Caption:
    template = values["template"]
    return Caption(**{**values, "template": CaptionTemplate(**{**template, "order": tuple(template["order"])})})


def save_training_inputs(examples: Sequence[TrainingExample], components: ComponentLookup, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / EXAMPLES_FILE, "w", encoding="utf-8") as lines:
        for example in examples:
            record = {
                "collection": example.collection,
                "token_id": example.token_id,
                "image_path": str(example.image_path),
                "caption": caption_to_json(example.caption),
            }
            lines.write(json.dumps(record) + "\n")
    (directory / COMPONENTS_DIR).mkdir(exist_ok=True)
    index = {}
    for number, (collection, lookup) in enumerate(sorted(components.items())):
        arrays, traits = {}, []
        for (trait_type, value), component in lookup.items():
            slot = None if component is None else len(arrays) // 2
            if component is not None:
                arrays[f"mask{slot}"], arrays[f"rgba{slot}"] = component
            traits.append([trait_type, value, slot])
        np.savez_compressed(directory / COMPONENTS_DIR / f"{number}.npz", **arrays)
        index[collection] = {"file": f"{number}.npz", "traits": traits}
    (directory / COMPONENTS_DIR / INDEX_FILE).write_text(json.dumps(index))


def load_examples(directory: Path) -> list[TrainingExample]:
    examples = []
    with open(directory / EXAMPLES_FILE, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            examples.append(
                TrainingExample(
                    collection=record["collection"],
                    token_id=record["token_id"],
                    image_path=Path(record["image_path"]),
                    caption=caption_from_json(record["caption"]),
                )
            )
    return examples


class _CollectionComponents(Mapping[Trait, Component | None]):
    """One collection's components, read from its archive on first use (per process: picklable)."""

    def __init__(self, path: Path, slots: dict[Trait, int | None]):
        self.path = path
        self.slots = slots
        self._archive: np.lib.npyio.NpzFile | None = None

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_archive": None}

    def __getitem__(self, trait: Trait) -> Component | None:
        slot = self.slots[trait]
        if slot is None:
            return None
        if self._archive is None:
            self._archive = np.load(self.path)
        return self._archive[f"mask{slot}"], self._archive[f"rgba{slot}"]

    def __iter__(self) -> Iterator[Trait]:
        return iter(self.slots)

    def __len__(self) -> int:
        return len(self.slots)


def load_components(directory: Path) -> ComponentLookup:
    index = json.loads((directory / COMPONENTS_DIR / INDEX_FILE).read_text())
    return {
        collection: _CollectionComponents(
            directory / COMPONENTS_DIR / entry["file"],
            {(trait_type, value): slot for trait_type, value, slot in entry["traits"]},
        )
        for collection, entry in index.items()
    }
