"""Segmentation datasets: folder layouts, hub datasets and the facts a model and the metric need.

* :func:`load_segmentation_dataset` -> :class:`SegmentationData` (``{split: datasets.Dataset}`` with ``image`` and
  ``annotation`` columns, plus ``.info``).
* :func:`find_pairs` / :func:`list_splits` / :func:`detect_layout`: (image_path, label_path) pairs of a folder.
* :class:`DatasetInfo` / :func:`dataset_info`: classes, palette, ignore index, ``reduce_labels``, ``label_map``;
  :meth:`DatasetInfo.convert_labels` turns stored annotations into training ids exactly like the image processor.

Class names and palettes come from ``hf_seg/label_sets.json``; no image is shipped with the package.
"""

from .info import (
    DatasetInfo,
    coco_stuff_raw_label_map,
    convert_labels,
    custom_info,
    dataset_info,
    info_for_num_labels,
)
from .layouts import LAYOUTS, DatasetLayoutError, SplitFiles, canonical_split, detect_layout, find_pairs, list_splits
from .loading import SegmentationData, detect_columns, load_segmentation_dataset, pairs_to_dataset

__all__ = [
    "LAYOUTS",
    "DatasetInfo",
    "DatasetLayoutError",
    "SegmentationData",
    "SplitFiles",
    "canonical_split",
    "coco_stuff_raw_label_map",
    "convert_labels",
    "custom_info",
    "dataset_info",
    "detect_columns",
    "detect_layout",
    "find_pairs",
    "info_for_num_labels",
    "list_splits",
    "load_segmentation_dataset",
    "pairs_to_dataset",
]
