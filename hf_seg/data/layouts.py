"""Folder layouts of the datasets the seeds report on: find the (image, label) pairs of a split.

Supported (the layouts mmsegmentation's dataset docs describe, which is how the papers' data were stored):

* ``ade20k``: ``ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*.{jpg,png}``.
* ``cityscapes``: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png``
  (made by cityscapesScripts/mmseg), or ``*_gtFine_labelIds.png`` and the labelIds -> trainIds map.
* ``pascal_context``: ``VOC2010/{JPEGImages,SegmentationClassContext}`` and ``ImageSets/SegmentationContext/<split>.txt``
  (59 classes: background 0 is ignored).
* ``coco_stuff``: mmseg's ``coco_stuff164k`` (``images/{train2017,val2017}``) or ``coco_stuff10k``
  (``images/{train2014,test2014}``) with ``annotations/<same>/<stem>_labelTrainIds.png`` (171 ids), or the official
  ``stuffthingmaps`` PNGs (``<stem>.png``, values 0..181) mapped to the 171 ids.
* ``camvid``: SegNet's ``{train,val,test}/`` with ``{train,val,test}annot/`` (11 classes, 11 = void -> ignore).
* ``images_annotations``: any ``images/<split>/`` + ``annotations/<split>/`` (or ``labels``/``masks``) pair of folders
  matched by file stem (classes unknown: give them yourself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .info import DatasetInfo, coco_stuff_raw_label_map, custom_info, dataset_info

__all__ = ["LAYOUTS", "SplitFiles", "canonical_split", "detect_layout", "find_pairs", "list_splits"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
                  "validation": "validation", "test": "test", "testing": "test"}


def canonical_split(split: str) -> str:
    """``training`` -> ``train``, ``val``/``valid`` -> ``validation``, ``testing`` -> ``test``; others unchanged."""
    return _SPLIT_ALIASES.get(split.lower(), split)


@dataclass
class SplitFiles:
    pairs: list[tuple[str, str]]
    info: DatasetInfo
    missing_labels: list[str] = field(default_factory=list)


class DatasetLayoutError(FileNotFoundError):
    """A folder that does not hold a known layout, or a split it lacks; the message says what was looked for."""


# ----------------------------------------------------------------------------------------------- helpers
def _images(folder: Path, suffixes=IMAGE_EXTENSIONS) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def _first_dir(candidates) -> Path | None:
    for c in candidates:
        if c.is_dir():
            return c
    return None


def _pair_by_stem(images: list[Path], label_dir: Path, label_name) -> tuple[list[tuple[str, str]], list[str]]:
    pairs, missing = [], []
    for image in images:
        label = label_dir / label_name(image)
        if label.is_file():
            pairs.append((str(image), str(label)))
        else:
            missing.append(str(image))
    return pairs, missing


# ----------------------------------------------------------------------------------------------- layouts
class Layout:
    name = ""
    dataset = ""

    def root(self, path: Path) -> Path | None:  # the dataset root under ``path`` if this layout matches
        raise NotImplementedError

    def splits(self, root: Path) -> list[str]:
        raise NotImplementedError

    def pairs(self, root: Path, split: str) -> SplitFiles:
        raise NotImplementedError

    def info(self, root: Path, **overrides) -> DatasetInfo:
        return dataset_info(self.dataset, layout=self.name, source=str(root), **overrides)


class ADE20K(Layout):
    name, dataset = "ade20k", "ade20k"
    _dirs = {"train": "training", "validation": "validation"}

    def root(self, path):
        for r in (path, path / "ADEChallengeData2016"):
            if (r / "images").is_dir() and (r / "annotations").is_dir() and any(
                    (r / "images" / d).is_dir() for d in self._dirs.values()):
                return r
        return None

    def splits(self, root):
        return [s for s, d in self._dirs.items() if (root / "images" / d).is_dir() and (root / "annotations" / d).is_dir()]

    def pairs(self, root, split):
        sub = self._dirs[split]
        images = _images(root / "images" / sub, (".jpg", ".jpeg", ".png"))
        pairs, missing = _pair_by_stem(images, root / "annotations" / sub, lambda p: p.stem + ".png")
        return SplitFiles(pairs, self.info(root), missing)


class Cityscapes(Layout):
    name, dataset = "cityscapes", "cityscapes"

    def root(self, path):
        for r in (path, path / "cityscapes"):
            if (r / "leftImg8bit").is_dir() and (r / "gtFine").is_dir():
                return r
        return None

    def splits(self, root):
        return [canonical_split(s) for s in ("train", "val", "test")
                if (root / "leftImg8bit" / s).is_dir() and (root / "gtFine" / s).is_dir()]

    def pairs(self, root, split):
        sub = {"validation": "val"}.get(split, split)
        images = sorted((root / "leftImg8bit" / sub).glob("*/*_leftImg8bit.png"))

        def label(kind):
            def name(image: Path) -> str:
                stem = image.name[: -len("_leftImg8bit.png")]
                return f"{image.parent.name}/{stem}_gtFine_{kind}.png"
            return name

        label_dir = root / "gtFine" / sub
        pairs, missing = _pair_by_stem(images, label_dir, label("labelTrainIds"))
        info = self.info(root, label_map=None)
        if missing or not pairs:
            id_pairs, id_missing = _pair_by_stem(images, label_dir, label("labelIds"))
            if len(id_pairs) > len(pairs):
                pairs, missing = id_pairs, id_missing
                info = self.info(root)  # labelIds -> trainIds map of the label set
                info.notes.append("gtFine *_labelTrainIds.png not found: reading *_labelIds.png through the "
                                  "official labelIds -> trainIds map")
        return SplitFiles(pairs, info, missing)


class PascalContext(Layout):
    name, dataset = "pascal_context", "pascal_context"

    def root(self, path):
        for r in (path, path / "VOC2010", path / "VOCdevkit" / "VOC2010"):
            if (r / "JPEGImages").is_dir() and (r / "SegmentationClassContext").is_dir():
                return r
        return None

    def _list(self, root, split):
        sub = {"validation": "val"}.get(split, split)
        return root / "ImageSets" / "SegmentationContext" / f"{sub}.txt"

    def splits(self, root):
        return [s for s in ("train", "validation") if self._list(root, s).is_file()]

    def pairs(self, root, split):
        ids = [line.split()[0] for line in self._list(root, split).read_text().splitlines() if line.strip()]
        pairs, missing = [], []
        for i in ids:
            image = next((root / "JPEGImages" / (i + ext) for ext in (".jpg", ".png")
                          if (root / "JPEGImages" / (i + ext)).is_file()), None)
            label = root / "SegmentationClassContext" / (i + ".png")
            if image is None or not label.is_file():
                missing.append(i)
            else:
                pairs.append((str(image), str(label)))
        return SplitFiles(pairs, self.info(root), missing)


class CocoStuff(Layout):
    name, dataset = "coco_stuff", "coco_stuff"
    _variants = ({"train": "train2017", "validation": "val2017"}, {"train": "train2014", "test": "test2014"})

    def root(self, path):
        for r in (path, path / "coco_stuff164k", path / "coco_stuff10k"):
            if (r / "images").is_dir() and (r / "annotations").is_dir() and any(
                    (r / "images" / d).is_dir() for v in self._variants for d in v.values()):
                return r
        return None

    def _dirs(self, root):
        for variant in self._variants:
            if any((root / "images" / d).is_dir() for d in variant.values()):
                return variant
        return {}

    def splits(self, root):
        return [s for s, d in self._dirs(root).items()
                if (root / "images" / d).is_dir() and (root / "annotations" / d).is_dir()]

    def pairs(self, root, split):
        sub = self._dirs(root)[split]
        images = _images(root / "images" / sub, (".jpg", ".jpeg", ".png"))
        label_dir = root / "annotations" / sub
        pairs, missing = _pair_by_stem(images, label_dir, lambda p: p.stem + "_labelTrainIds.png")
        if sub in self._variants[1].values():
            return self._pairs_10k(root, images, label_dir, pairs, missing)
        info = self.info(root, label_map=None)
        if missing or not pairs:
            raw_pairs, raw_missing = _pair_by_stem(images, label_dir, lambda p: p.stem + ".png")
            if len(raw_pairs) > len(pairs):
                pairs, missing = raw_pairs, raw_missing
                info = self.info(root, label_map=coco_stuff_raw_label_map())
                info.notes.append("reading the official stuffthingmaps (*.png, values 0..181) through the "
                                  "stuffthingmaps -> 171 train-id map (mmseg's coco_stuff164k converter)")
        return SplitFiles(pairs, info, missing)

    def _pairs_10k(self, root, images, label_dir, pairs, missing):
        # mmseg's coco_stuff10k converter (used by the papers' code) writes 0 = unlabelled and the 171 classes as
        # 1..171 (train2014: *_labelTrainIds.png, test2014: *.png), and the 10k configs read them with
        # reduce_zero_label=True; the 164k converter writes 0..170 with 255 = unlabelled (no reduction)
        if missing or not pairs:
            plain_pairs, plain_missing = _pair_by_stem(images, label_dir, lambda p: p.stem + ".png")
            if len(plain_pairs) > len(pairs):
                pairs, missing = plain_pairs, plain_missing
        info = self.info(root, label_map=None, reduce_labels=True)
        info.notes.append("COCO-Stuff 10k annotations (0 = unlabelled, classes 1..171) read with reduce_zero_label, "
                          "as mmseg's coco-stuff10k configs do")
        return SplitFiles(pairs, info, missing)


class CamVid(Layout):
    name, dataset = "camvid", "camvid"

    def root(self, path):
        for r in (path, path / "CamVid", path / "camvid"):
            if any((r / s).is_dir() and (r / f"{s}annot").is_dir() for s in ("train", "val", "test")):
                return r
        return None

    def splits(self, root):
        return [canonical_split(s) for s in ("train", "val", "test")
                if (root / s).is_dir() and (root / f"{s}annot").is_dir()]

    def pairs(self, root, split):
        sub = {"validation": "val"}.get(split, split)
        images = _images(root / sub, (".png", ".jpg"))
        pairs, missing = _pair_by_stem(images, root / f"{sub}annot", lambda p: p.stem + ".png")
        return SplitFiles(pairs, self.info(root), missing)


class ImagesAnnotations(Layout):
    """Generic ``images/<split>`` + ``annotations|labels|masks/<split>`` folders."""

    name, dataset = "images_annotations", "custom"
    _label_dirs = ("annotations", "labels", "masks", "gt")

    def _label_root(self, r):
        return _first_dir(r / d for d in self._label_dirs)

    def root(self, path):
        if (path / "images").is_dir() and self._label_root(path) is not None:
            return path
        return None

    def _split_dirs(self, root):
        label_root = self._label_root(root)
        out = {}
        for d in sorted(p for p in (root / "images").iterdir() if p.is_dir()):
            if (label_root / d.name).is_dir():
                out[canonical_split(d.name)] = d.name
        if not out and _images(root / "images"):
            out["train"] = ""  # flat folders: a single split
        return out

    def splits(self, root):
        return list(self._split_dirs(root))

    def pairs(self, root, split):
        sub = self._split_dirs(root)[split]
        label_dir = self._label_root(root) / sub if sub else self._label_root(root)
        images = _images(root / "images" / sub if sub else root / "images")
        labels = {p.stem: p for p in _images(label_dir, (".png", ".tif", ".tiff", ".bmp"))}
        pairs, missing = [], []
        for image in images:
            stem = image.stem
            label = labels.get(stem) or next((labels[s] for s in (stem + "_label", stem + "_mask", stem + "_gt")
                                              if s in labels), None)
            if label is None:
                missing.append(str(image))
            else:
                pairs.append((str(image), str(label)))
        return SplitFiles(pairs, self.info(root), missing)

    def info(self, root, **overrides):
        return custom_info(layout=self.name, source=str(root), **overrides)


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in
                              (ADE20K(), Cityscapes(), PascalContext(), CocoStuff(), CamVid(), ImagesAnnotations())}


def detect_layout(path, layout: str | None = None) -> tuple[Layout, Path]:
    """(layout, dataset root) of a folder; ``layout`` forces one."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DatasetLayoutError(f"{path} is not a folder")
    candidates = [LAYOUTS[layout]] if layout else list(LAYOUTS.values())
    if layout and layout not in LAYOUTS:
        raise KeyError(f"unknown layout {layout!r}; known: {sorted(LAYOUTS)}")
    for candidate in candidates:
        root = candidate.root(path)
        if root is not None:
            return candidate, root
    raise DatasetLayoutError(
        f"{path} is not a dataset folder hf_seg knows. Looked for: ADE20K (images/ + annotations/ with "
        "training|validation), Cityscapes (leftImg8bit/ + gtFine/), Pascal-Context (JPEGImages/ + "
        "SegmentationClassContext/), COCO-Stuff (images/ + annotations/ with train2017|val2017|train2014|test2014), "
        "CamVid (train/ + trainannot/ ...), or generic images/<split>/ + annotations/<split>/.")


def list_splits(path, layout: str | None = None) -> list[str]:
    found, root = detect_layout(path, layout)
    return found.splits(root)


def find_pairs(path, split: str, layout: str | None = None) -> SplitFiles:
    """(image_path, label_path) pairs of ``split`` (``train``/``validation``/``test`` or aliases) and the facts."""
    found, root = detect_layout(path, layout)
    split = canonical_split(split)
    available = found.splits(root)
    if split not in available:
        raise DatasetLayoutError(f"{root} ({found.name} layout) has no split {split!r}; it has {available}")
    files = found.pairs(root, split)
    if not files.pairs:
        raise DatasetLayoutError(f"{root} ({found.name} layout), split {split!r}: no image with a label found"
                                 + (f" ({len(files.missing_labels)} images without labels)" if files.missing_labels
                                    else ""))
    files.info.splits = available
    return files
