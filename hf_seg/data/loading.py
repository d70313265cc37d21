"""``load_segmentation_dataset``: a dataset folder, a ``save_to_disk`` folder or a hub dataset as ``datasets.Dataset``
splits with two columns, ``image`` and ``annotation`` (both ``datasets.Image``, decoded lazily), plus its facts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..label_sets import canonical_dataset, datasets_named_in
from .info import DatasetInfo, custom_info, dataset_info
from .layouts import DatasetLayoutError, canonical_split, detect_layout, find_pairs

__all__ = ["SegmentationData", "load_segmentation_dataset", "pairs_to_dataset", "detect_columns"]

IMAGE_COLUMN_NAMES = ("image", "img", "pixel_values", "images", "rgb", "input")
LABEL_COLUMN_NAMES = ("annotation", "semantic_segmentation", "segmentation", "label", "labels", "mask", "masks",
                      "semantic_map", "seg_map", "gt", "target", "sem_seg", "segmentation_mask", "label_map")


@dataclass
class SegmentationData(Mapping):
    """``{split: datasets.Dataset}`` (columns ``image``, ``annotation``) with the dataset's facts in ``.info``."""

    splits: dict
    info: DatasetInfo
    pairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # folder layouts only
    # folder layouts: images of each split that have no annotation file (left out of the split, reported here)
    missing_labels: dict[str, list[str]] = field(default_factory=dict)

    def __getitem__(self, split: str):
        if split in self.splits:
            return self.splits[split]
        canonical = canonical_split(split)
        if canonical in self.splits:
            return self.splits[canonical]
        raise KeyError(f"no split {split!r}; available: {sorted(self.splits)}")

    def __iter__(self) -> Iterator[str]:
        return iter(self.splits)

    def __len__(self) -> int:
        return len(self.splits)

    def __repr__(self) -> str:
        sizes = {k: len(v) for k, v in self.splits.items()}
        unlabelled = {k: len(v) for k, v in self.missing_labels.items() if v}
        extra = f", images without annotation={unlabelled}" if unlabelled else ""
        return f"SegmentationData({self.info.name}, layout={self.info.layout}, splits={sizes}{extra})"


def pairs_to_dataset(pairs):
    """A ``datasets.Dataset`` over (image_path, label_path) pairs; files are read when rows are accessed."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), "annotation": datasets.Image(),
                                  "image_path": datasets.Value("string")})
    images = [str(i) for i, _ in pairs]
    labels = [str(a) for _, a in pairs]
    return datasets.Dataset.from_dict({"image": images, "annotation": labels, "image_path": images},
                                      features=features)


def detect_columns(features) -> tuple[str, str]:
    """(image column, annotation column) of a hub dataset's features."""
    import datasets

    image_like = [name for name, feat in features.items() if isinstance(feat, datasets.Image)]
    lowered = {name.lower(): name for name in features}
    image = next((lowered[n] for n in IMAGE_COLUMN_NAMES if n in lowered and lowered[n] in image_like), None)
    label = next((lowered[n] for n in LABEL_COLUMN_NAMES if n in lowered and lowered[n] != image), None)
    if image is None:
        image = next((n for n in image_like if n != label), None)
    if label is None:
        label = next((n for n in image_like if n != image), None)
    if image is None or label is None:
        raise ValueError(f"cannot tell the image and annotation columns apart in {dict(features)}; "
                         f"pass image_column= and label_column=")
    return image, label


def _hub_info(name: str, id2label=None) -> DatasetInfo:
    """Facts of a hub dataset: a known dataset by name, else an ``id2label.json`` next to it, else custom."""
    canonical = canonical_dataset(Path(name).name) or canonical_dataset(name.split("/")[-1]) or next(
        iter(datasets_named_in(name)), None)
    if id2label is None and os.path.isdir(name) and (Path(name) / "id2label.json").is_file():
        id2label = json.loads((Path(name) / "id2label.json").read_text())
    if id2label is not None:
        return custom_info(id2label=id2label)
    if canonical is not None:
        return dataset_info(canonical)
    return custom_info()


def _rename(dataset, image_column: str, label_column: str):
    if image_column != "image":
        if "image" in dataset.column_names:
            dataset = dataset.remove_columns("image")
        dataset = dataset.rename_column(image_column, "image")
    if label_column != "annotation":
        if "annotation" in dataset.column_names:
            dataset = dataset.remove_columns("annotation")
        dataset = dataset.rename_column(label_column, "annotation")
    return dataset


def load_segmentation_dataset(
    path_or_name: str,
    split: str | None = None,
    layout: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    id2label: Mapping | None = None,
    **load_dataset_kwargs,
) -> SegmentationData:
    """Load a segmentation dataset as ``{split: datasets.Dataset}`` with ``image`` and ``annotation`` columns.

    ``path_or_name`` may be a dataset folder in one of the layouts of :mod:`hf_seg.data.layouts` (ADE20K,
    Cityscapes, Pascal-Context, COCO-Stuff, CamVid, generic images/annotations), a ``Dataset.save_to_disk`` folder,
    or a hub dataset name for ``datasets.load_dataset`` (its image and annotation columns are found and renamed).
    ``split`` loads only that split (aliases such as ``val``/``training`` are understood). The result's ``.info``
    (:class:`DatasetInfo`) holds the facts: classes, ignore index, ``reduce_labels``, ``label_map``, palette.

    Example::

        data = load_segmentation_dataset("/data/ADEChallengeData2016", split="validation")
        ds, info = data["validation"], data.info      # info.reduce_labels is True for ADE20K
    """
    path = Path(str(path_or_name)).expanduser()
    if path.is_dir() and not _is_saved_dataset(path):
        try:
            found, root = detect_layout(path, layout)
        except DatasetLayoutError:
            if not (path / "dataset_infos.json").exists() and not any(path.glob("*.py")) and not any(
                    path.glob("**/*.parquet")):
                raise
        else:
            splits = [canonical_split(split)] if split else found.splits(root)
            datasets_, pairs, missing, info = {}, {}, {}, None
            for s in splits:
                files = find_pairs(root, s, found.name)
                datasets_[s] = pairs_to_dataset(files.pairs)
                pairs[s] = files.pairs
                missing[s] = list(files.missing_labels)
                info = files.info
            if info is None:
                raise DatasetLayoutError(f"{root} ({found.name} layout) has no split with labels")
            info.splits = found.splits(root)
            if id2label is not None:
                info = info.replace(id2label={int(k): str(v) for k, v in id2label.items()},
                                    num_labels=len(id2label))
            return SegmentationData(datasets_, info, pairs, missing)

    import datasets

    if path.is_dir() and _is_saved_dataset(path):
        loaded = datasets.load_from_disk(str(path))
        layout_name = "disk"
    else:
        loaded = _load_hub_dataset(str(path_or_name), **load_dataset_kwargs)
        layout_name = "hub"
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({split or "train": loaded})
    if split is not None:
        key = split if split in loaded else canonical_split(split)
        if key not in loaded:
            key = next((k for k in loaded if canonical_split(k) == canonical_split(split)), None)
        if key is None:
            raise KeyError(f"{path_or_name} has no split {split!r}; it has {list(loaded)}")
        loaded = {key: loaded[key]}
    splits = {}
    for name, ds in loaded.items():
        img_col, lab_col = (image_column, label_column) if image_column and label_column else detect_columns(
            ds.features)
        splits[name] = _rename(ds, image_column or img_col, label_column or lab_col)
    info = _hub_info(str(path_or_name), id2label)
    info.layout = layout_name
    info.source = str(path_or_name)
    info.splits = list(splits)
    return SegmentationData(splits, info)


def _load_hub_dataset(name: str, **kwargs):
    """``datasets.load_dataset`` for names that can be hub datasets; a mistyped local path never reaches the hub, and
    a hub the network cannot reach fails in one line (``datasets`` itself retries for half a minute)."""
    import datasets

    from ..hub_or_path import check_hub_reachable, looks_like_hub_id, no_network_message, similar_paths

    close = similar_paths(name)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    if not os.path.exists(name) and ("/" in name or os.sep in name) and not looks_like_hub_id(name):
        raise DatasetLayoutError(f"no dataset folder {name!r}{hint}")
    problem = None if os.path.exists(name) else check_hub_reachable(name, "dataset")
    if problem is None:
        try:
            return datasets.load_dataset(name, **kwargs)
        except ConnectionError as err:
            problem = no_network_message(name, err)
            if problem is None:
                raise
    raise DatasetLayoutError(f"{problem}; nor is {name!r} a local folder{hint}")


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
