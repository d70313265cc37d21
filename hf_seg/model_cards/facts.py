"""Facts the cards state about datasets and families (no rendering here)."""

from __future__ import annotations

from dataclasses import dataclass

from ..zoo import Citation, FamilyFacts, family_facts  # noqa: F401 - the family facts live in each family's presets.json


@dataclass(frozen=True)
class DatasetFacts:
    name: str  # display name
    hub_type: str  # EvalResult.dataset_type
    split: str
    hub_dataset: str | None = None  # a hub dataset id for ModelCardData.datasets, where one is well known


DATASETS: dict[str, DatasetFacts] = {
    "ade20k": DatasetFacts("ADE20K", "scene_parse_150", "validation", "scene_parse_150"),
    "cityscapes": DatasetFacts("Cityscapes", "cityscapes", "validation"),
    "pascal_context": DatasetFacts("PASCAL-Context", "pascal_context", "validation"),
    "pascal_context_60": DatasetFacts("PASCAL-Context", "pascal_context", "validation"),  # background included
    # SeMask's COCO-Stuff 10k configs evaluate on images/test2014 (the 1k test images)
    "coco_stuff": DatasetFacts("COCO-Stuff 10k", "coco_stuff_10k", "test"),
    "camvid": DatasetFacts("CamVid", "camvid", "test"),
}


def dataset_facts(dataset: str) -> DatasetFacts:
    return DATASETS.get(dataset, DatasetFacts(dataset, dataset, "validation"))

