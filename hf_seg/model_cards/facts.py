"""Facts the cards state about datasets and families (no rendering here)."""

from __future__ import annotations

from dataclasses import dataclass

from ..label_sets import available_label_sets, get_label_set
from ..zoo import Citation, FamilyFacts, family_facts  # noqa: F401 - the family facts live in each family's presets.json


@dataclass(frozen=True)
class DatasetFacts:
    name: str  # display name
    hub_type: str  # EvalResult.dataset_type
    split: str
    hub_dataset: str | None = None  # a hub dataset id for ModelCardData.datasets, where one is well known


def dataset_facts(dataset: str) -> DatasetFacts:
    """What a card says about a label set (its ``"card"`` entry in label_sets.json)."""
    card = get_label_set(dataset).card if dataset in available_label_sets() else {}
    if not card:
        return DatasetFacts(dataset, dataset, "validation")
    return DatasetFacts(card["display"], card["hub_type"], card["split"], card.get("hub_dataset"))
