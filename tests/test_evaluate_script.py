"""scripts/evaluate.py / hf_seg.evaluation on real samples copied into tests/data (ADE20K, CamVid, Cityscapes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModelForSemanticSegmentation, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SemanticSegmenterOutput

import hf_seg  # noqa: F401 - registers the Auto classes
from hf_seg.data import dataset_info, find_pairs, load_segmentation_dataset
from hf_seg.evaluation import evaluate_segmentation, main
from hf_seg.image_processing import HfSegImageProcessor
from hf_seg.inference import num_windows
from hf_seg.metrics import mean_iou

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


pytestmark = pytest.mark.usefixtures("single_thread")


class TinySegConfig(PretrainedConfig):
    model_type = "hf_seg_test_tiny_seg"

    def __init__(self, constant_class=None, test_mode="whole", test_crop_size=None, test_stride=None, **kwargs):
        self.constant_class = constant_class
        self.test_mode = test_mode
        self.test_crop_size = test_crop_size
        self.test_stride = test_stride
        super().__init__(**kwargs)


class TinySegModel(PreTrainedModel):
    """Output stride 4; with ``constant_class`` it predicts that class everywhere (for exact expected metrics)."""

    config_class = TinySegConfig
    base_model_prefix = "tiny"
    main_input_name = "pixel_values"

    def __init__(self, config):
        super().__init__(config)
        self.head = nn.Conv2d(3, config.num_labels, 1)
        self.post_init()

    def forward(self, pixel_values, labels=None, output_hidden_states=None, return_dict=None):
        logits = self.head(F.avg_pool2d(pixel_values, 4, ceil_mode=True))
        if self.config.constant_class is not None:
            logits = torch.zeros_like(logits)
            logits[:, self.config.constant_class] = 1.0
        return SemanticSegmenterOutput(logits=logits)


AutoConfig.register(TinySegConfig.model_type, TinySegConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(TinySegConfig, TinySegModel, exist_ok=True)


def _save_tiny(path: Path, info, processor_kwargs, **config_kwargs) -> Path:
    torch.manual_seed(0)
    model = TinySegModel(TinySegConfig(num_labels=info.num_labels, id2label=info.id2label, **config_kwargs))
    model.save_pretrained(path)
    HfSegImageProcessor(**processor_kwargs).save_pretrained(path)
    return path


def test_dataset_layouts_of_the_copied_samples():
    ade = load_segmentation_dataset(DATA / "ade20k", split="val")
    assert list(ade) == ["validation"] and len(ade["validation"]) == 3
    assert ade.info.name == "ade20k" and ade.info.reduce_labels and ade.info.num_labels == 150
    assert ade.info.class_names[0] == "wall"
    row = ade["validation"][0]
    assert row["image"].size == row["annotation"].size == (683, 512)
    camvid = load_segmentation_dataset(DATA / "camvid")
    assert "test" in camvid and camvid.info.label_map == {11: 255} and camvid.info.num_labels == 11
    labels = camvid.info.convert_labels(np.array(camvid["test"][0]["annotation"]))
    assert set(np.unique(labels)) <= set(range(11)) | {255}
    city = find_pairs(DATA / "cityscapes", "val")
    assert city.pairs[0][1].endswith("_gtFine_labelTrainIds.png") and city.info.label_map is None


def test_cityscapes_label_ids_fall_back_to_the_official_map(tmp_path):
    src = DATA / "cityscapes"
    for sub in ("leftImg8bit/val/frankfurt", "gtFine/val/frankfurt"):
        (tmp_path / sub).mkdir(parents=True)
    stem = "frankfurt_000000_000294"
    for name in (f"leftImg8bit/val/frankfurt/{stem}_leftImg8bit.png", f"gtFine/val/frankfurt/{stem}_gtFine_labelIds.png"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    files = find_pairs(tmp_path, "validation")
    assert files.pairs[0][1].endswith("_labelIds.png") and files.info.label_map[7] == 0
    mapped = files.info.convert_labels(np.array(Image.open(files.pairs[0][1])))
    train_ids = np.array(Image.open(src / f"gtFine/val/frankfurt/{stem}_gtFine_labelTrainIds.png"))
    # mmseg downscaled the two files separately: they agree except on ~77 boundary pixels (see README)
    assert (mapped == train_ids).mean() > 0.995


@pytest.mark.parametrize("dataset, constant", [("ade20k", 2), ("camvid", 3)])
def test_constant_model_gives_the_exact_expected_metrics(tmp_path, dataset, constant):
    info = dataset_info(dataset)
    model_dir = _save_tiny(tmp_path / "model", info, {"resize_mode": "fixed", "size": {"height": 64, "width": 96}},
                           constant_class=constant)
    out = tmp_path / "result.json"
    assert main(["--model", str(model_dir), "--dataset", str(DATA / dataset), "--split",
                 "val" if dataset == "ade20k" else "test", "--output", str(out), "--no-progress",
                 "--quiet"]) == 0
    record = json.loads(out.read_text())
    data = load_segmentation_dataset(DATA / dataset, split="val" if dataset == "ade20k" else "test")
    split = next(iter(data))
    refs = [np.array(row["annotation"]) for row in data[split]]
    preds = [np.full(r.shape, constant, dtype=np.int64) for r in refs]
    # independent path: the metric's own reduce_labels / label_map on the raw annotations
    expected = mean_iou(preds, refs, num_labels=info.num_labels, ignore_index=255, reduce_labels=info.reduce_labels,
                        label_map=info.label_map)
    assert record["num_images"] == len(refs)
    assert record["metrics"]["mean_iou"] == pytest.approx(float(expected["mean_iou"]), abs=0, rel=1e-15)
    assert record["metrics"]["overall_accuracy"] == float(expected["overall_accuracy"])
    assert record["metrics"]["mIoU"] == pytest.approx(100 * float(expected["mean_iou"]))
    per_iou = [c["iou"] for c in record["per_category"]]
    assert [None if np.isnan(x) else float(x) for x in expected["per_category_iou"]] == per_iou
    assert record["per_category"][constant]["name"] == info.id2label[constant]
    assert record["dataset"] == dataset and record["split"] == split and record["test_mode"] == "whole"
    assert record["protocol"]["reduce_labels"] == info.reduce_labels
    for key in ("model_s_per_image", "total_s", "model_load_s"):
        assert record["timings"][key] > 0


def test_slide_and_aug_test_protocols(tmp_path):
    info = dataset_info("camvid")  # 11 classes: cheap full-resolution softmax/argmax
    model_dir = _save_tiny(tmp_path / "model", info, {"resize_mode": "keep_ratio", "scale": [128, 64]},
                           test_mode="slide", test_crop_size=[48, 48], test_stride=[32, 32])
    out = tmp_path / "slide.json"
    main(["--model", str(model_dir), "--dataset", str(DATA / "camvid"), "--split", "test", "--max-samples", "2",
          "--batch-size", "4", "--output", str(out), "--no-progress", "--quiet"])
    record = json.loads(out.read_text())
    assert record["num_images"] == 2 and record["test_mode"] == "slide"
    assert record["protocol"]["crop_size"] == [48, 48]
    assert record["timings"]["windows"] == 2 * num_windows(64, 85, 48, 32)  # 480x360 -> 85x64 (keep ratio)
    assert 0 <= record["metrics"]["mean_iou"] <= 1 and 0 <= record["metrics"]["overall_accuracy"] <= 1
    out = tmp_path / "aug.json"
    main(["--model", str(model_dir), "--dataset", str(DATA / "camvid"), "--split", "test", "--max-samples", "1",
          "--aug-test", "--scales", "0.5", "1.0", "--mode", "whole", "--output", str(out), "--no-progress",
          "--quiet"])
    record = json.loads(out.read_text())
    assert record["aug_test"] and record["protocol"]["flip"] and record["protocol"]["scales"] == [0.5, 1.0]
    assert record["test_mode"] == "whole"
    # the model-card reader understands the JSON
    from hf_seg.model_cards import parse_eval_json

    (measured,) = parse_eval_json(record)
    assert measured.multi_scale and measured.num_images == 1


def test_evaluate_segmentation_matches_manual_pipeline():
    info = dataset_info("camvid")
    torch.manual_seed(0)
    model = TinySegModel(TinySegConfig(num_labels=11, id2label=info.id2label)).eval()
    processor = HfSegImageProcessor(resize_mode="fixed", size={"height": 90, "width": 120})
    data = load_segmentation_dataset(DATA / "camvid", split="test")
    result = evaluate_segmentation(model, processor, data["test"], data.info, progress=False)
    preds, refs = [], []
    for row in data["test"]:
        pixel_values = processor(row["image"].convert("RGB"), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            logits = model(pixel_values=pixel_values).logits
        logits = F.interpolate(logits, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)
        logits = F.interpolate(logits, size=(360, 480), mode="bilinear", align_corners=False)
        preds.append(logits.argmax(1)[0].numpy())
        refs.append(np.array(row["annotation"]))
    expected = mean_iou(preds, refs, 11, 255, label_map={11: 255})
    assert float(result.metrics["mean_iou"]) == float(expected["mean_iou"])
    assert np.array_equal(np.asarray([c["iou"] for c in result.per_category], dtype=float),
                          expected["per_category_iou"], equal_nan=True)


def test_dataset_and_model_class_counts_must_agree(tmp_path):
    model = TinySegModel(TinySegConfig(num_labels=5))
    data = load_segmentation_dataset(DATA / "camvid", split="test")
    with pytest.raises(ValueError, match="classes"):
        evaluate_segmentation(model, HfSegImageProcessor(), data["test"], data.info, progress=False)


def test_evaluate_script_subprocess(tmp_path):
    from hf_seg.modeling import csail

    info = dataset_info("ade20k")
    torch.manual_seed(0)
    model = csail.CsailForSemanticSegmentation(csail.CsailConfig(
        arch_encoder="mobilenetv2dilated", arch_decoder="c1_deepsup", num_labels=150, id2label=info.id2label))
    model.save_pretrained(tmp_path / "csail")
    HfSegImageProcessor(resize_mode="keep_ratio", scale=[256, 96], do_reduce_labels=True).save_pretrained(
        tmp_path / "csail")
    out = tmp_path / "csail.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--model", str(tmp_path / "csail"),
                           "--dataset", str(DATA / "ade20k"), "--split", "validation", "--max-samples", "2",
                           "--device", "cpu", "--output", str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mIoU" in proc.stdout and "wall" in proc.stdout  # summary line and the per-class table
    record = json.loads(out.read_text())
    assert record["model_type"] == model.config.model_type and record["num_images"] == 2
    assert record["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert len(record["per_category"]) == 150
    assert all(0 <= record["metrics"][k] <= 1 for k in ("mean_iou", "mean_accuracy", "overall_accuracy"))
    assert record["environment"]["device"] == "cpu"


# ------------------------------------------------------------------------------------- synthetic layouts
def _png(path: Path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array), mode=mode).save(path)


def _rgb(seed, h=6, w=8):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_pascal_context_layout(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2010"
    for i, name in enumerate(["2008_000001", "2008_000002", "2008_000003"]):
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb(i)).save(root / "JPEGImages" / f"{name}.jpg")
        _png(root / "SegmentationClassContext" / f"{name}.png", np.full((6, 8), i * 10, np.uint8))
    lists = root / "ImageSets" / "SegmentationContext"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2008_000001\n2008_000002\n")
    (lists / "val.txt").write_text("2008_000003\n")
    data = load_segmentation_dataset(tmp_path)
    assert sorted(data) == ["train", "validation"] and len(data["train"]) == 2
    info = data.info
    assert info.name == "pascal_context" and info.num_labels == 59 and info.reduce_labels
    assert info.convert_labels(np.array([[0, 1, 59]])).tolist() == [[255, 0, 58]]
    # a 60-class model (SETR / UN-EPT heads) is evaluated with background as class 0
    from hf_seg.data import info_for_num_labels

    info60 = info_for_num_labels(info, 60)
    assert info60.num_labels == 60 and not info60.reduce_labels and info60.layout == "pascal_context"
    assert info60.convert_labels(np.array([[0, 1, 59]])).tolist() == [[0, 1, 59]]
    model = TinySegModel(TinySegConfig(num_labels=60, constant_class=20))  # the val map is all 20
    result = evaluate_segmentation(model, HfSegImageProcessor(resize_mode="none"), data["validation"], info,
                                   progress=False)
    assert result.info.name == "pascal_context_60" and float(result.metrics["overall_accuracy"]) == 1.0


@pytest.mark.parametrize("variant, splits", [("coco_stuff164k", ("train2017", "val2017")),
                                             ("coco_stuff10k", ("train2014", "test2014"))])
def test_coco_stuff_layouts(tmp_path, variant, splits):
    root = tmp_path / variant
    for split in splits:
        Image.fromarray(_rgb(1)).save(_mk(root / "images" / split) / "000000000139.jpg")
        _png(root / "annotations" / split / "000000000139_labelTrainIds.png", np.full((6, 8), 170, np.uint8))
    data = load_segmentation_dataset(tmp_path)
    expected = {"train2017": "train", "val2017": "validation", "train2014": "train", "test2014": "test"}
    assert sorted(data) == sorted(expected[s] for s in splits)
    assert data.info.name == "coco_stuff" and data.info.num_labels == 171 and data.info.label_map is None
    # 164k train ids are 0..170 (255 unlabelled); the 10k converter writes 0 = unlabelled, classes 1..171
    if variant == "coco_stuff164k":
        assert data.info.convert_labels(np.array([[0, 1, 170, 255]])).tolist() == [[0, 1, 170, 255]]
    else:
        assert data.info.convert_labels(np.array([[0, 1, 171, 255]])).tolist() == [[255, 0, 170, 255]]


def test_coco_stuff10k_test_split_reads_plain_png_as_train_ids(tmp_path):
    # mmseg's 10k converter names the test2014 maps <stem>.png (train2014: <stem>_labelTrainIds.png): the same ids,
    # never the 164k stuffthingmaps (raw 0..181) mapping
    root = tmp_path / "coco_stuff10k"
    Image.fromarray(_rgb(1)).save(_mk(root / "images" / "test2014") / "COCO_train2014_000000000077.jpg")
    _png(root / "annotations" / "test2014" / "COCO_train2014_000000000077.png",
         np.array([[0, 1, 171, 12]] * 6, dtype=np.uint8))
    files = find_pairs(tmp_path, "test")
    assert files.pairs[0][1].endswith("000000000077.png") and files.info.label_map is None
    ids = files.info.convert_labels(np.array(Image.open(files.pairs[0][1])))[0].tolist()
    assert ids == [255, 0, 170, 11]


def test_coco_stuff_raw_stuffthingmaps_are_mapped(tmp_path):
    root = tmp_path / "coco_stuff164k"
    Image.fromarray(_rgb(1)).save(_mk(root / "images" / "val2017") / "000000000285.jpg")
    raw = np.array([[0, 11, 12, 181, 255, 89, 91, 90]] * 6, dtype=np.uint8)  # 11 = street sign (unused)
    _png(root / "annotations" / "val2017" / "000000000285.png", raw)
    files = find_pairs(tmp_path, "val")
    assert files.pairs[0][1].endswith("000000000285.png") and files.info.label_map is not None
    ids = files.info.convert_labels(np.array(Image.open(files.pairs[0][1])))[0].tolist()
    # person 0, street sign (unused) 255, stop sign 11, wood (last stuff) 170, unlabeled 255, toothbrush 79,
    # banner (first stuff) 80, hair brush (unused) 255
    assert ids == [0, 255, 11, 170, 255, 79, 80, 255]


def test_generic_images_annotations_layout(tmp_path):
    for split in ("train", "val"):
        Image.fromarray(_rgb(2)).save(_mk(tmp_path / "images" / split) / "a.jpg")
        _png(tmp_path / "annotations" / split / "a.png", np.ones((6, 8), np.uint8))
    data = load_segmentation_dataset(tmp_path)
    assert sorted(data) == ["train", "validation"] and data.info.name == "custom" and data.info.num_labels is None
    data = load_segmentation_dataset(tmp_path, split="val", id2label={0: "bg", 1: "fg"})
    assert list(data) == ["validation"] and data.info.num_labels == 2 and data.info.class_names == ["bg", "fg"]


def test_saved_dataset_with_other_column_names(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict(
        {"pixel_values": [Image.fromarray(_rgb(3))], "label": [Image.fromarray(np.zeros((6, 8), np.uint8))],
         "scene": ["x"]},
        features=datasets.Features({"pixel_values": datasets.Image(), "label": datasets.Image(),
                                    "scene": datasets.Value("string")}))
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "scene_parse_150_subset"))
    data = load_segmentation_dataset(str(tmp_path / "scene_parse_150_subset"), split="val")
    assert list(data) == ["validation"]
    row = data["validation"][0]
    assert {"image", "annotation"} <= set(row) and row["annotation"].mode == "L"
    assert data.info.name == "ade20k" and data.info.reduce_labels  # known from the name
    assert data.info.layout == "disk"


def test_unknown_folder_is_explained(tmp_path):
    from hf_seg.data import DatasetLayoutError

    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetLayoutError, match="ADE20K"):
        find_pairs(tmp_path, "val")
    with pytest.raises(DatasetLayoutError, match="no split"):
        find_pairs(DATA / "ade20k", "train")


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
