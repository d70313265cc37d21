"""Evaluation and prediction at dataset scale: N processes under ``accelerate launch`` give the 1-process confusion
matrix bit for bit (odd image counts, TTA, batching), workers, label checks, saved predictions, ``hf-seg predict``
over folders with a corrupt file, and bounded memory on large photos."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hf_seg  # noqa: F401 - registers the Auto classes
from hf_seg import HfSegImageProcessor
from hf_seg.data import dataset_info, load_segmentation_dataset
from hf_seg.data.inference_data import plan_batches
from hf_seg.distributed import Processes
from hf_seg.evaluation import EvaluationError, evaluate_segmentation
from hf_seg.label_sets import get_label_set
from hf_seg.modeling.semask import SeMaskForSemanticSegmentation, tiny_config

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
CAMVID = DATA / "camvid"

pytestmark = pytest.mark.usefixtures("single_thread")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(**extra) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)


@pytest.fixture(scope="module")
def camvid_model(tmp_path_factory) -> Path:
    """A tiny random SeMask with CamVid's 11 classes and a small keep-ratio test resize."""
    labels = get_label_set("camvid")
    config = tiny_config(num_labels=11, id2label=dict(labels.id2label), label2id={v: k for k, v in
                                                                                  labels.id2label.items()})
    torch.manual_seed(0)
    model = SeMaskForSemanticSegmentation(config).eval()
    path = tmp_path_factory.mktemp("semask_camvid")
    model.save_pretrained(path)
    HfSegImageProcessor(resize_mode="keep_ratio", scale=[96, 72], pad_size_divisor=8).save_pretrained(path)
    return path


def evaluate_cli(model: Path, out: Path, *extra: str, processes: int = 1, timeout=900):
    """scripts/evaluate.py on the first 3 CamVid test images: in this process (1), or under
    ``accelerate launch --cpu --num_processes N`` (a subprocess, 1 thread per process as here)."""
    from hf_seg.evaluation import main

    args = ["--model", str(model), "--dataset", str(CAMVID), "--split", "test", "--max-samples", "3",
            "--device", "cpu", "--num-workers", "1", "--no-progress", "--quiet", "--output", str(out / "result.json"),
            "--confusion-out", str(out / "confusion.npy"), "--save-predictions", str(out / "predictions"), *extra]
    if processes == 1:
        return subprocess.CompletedProcess(args, main(args), "", "")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(free_port()), str(ROOT / "scripts" / "evaluate.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=environment(), timeout=timeout)


@pytest.mark.parametrize("extra", [
    pytest.param((), id="whole"),
    pytest.param(("--aug-test", "--scales", "0.75", "1.0"), id="aug-test"),
    pytest.param(("--batch-size", "2"), id="batched", marks=pytest.mark.slow),
    pytest.param(("--mode", "slide", "--crop-size", "48", "--stride", "32", "--batch-size", "3"), id="slide",
                 marks=pytest.mark.slow),
])
def test_two_processes_give_the_one_process_confusion_matrix_bit_for_bit(camvid_model, tmp_path, extra, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    single = evaluate_cli(camvid_model, one, *extra)
    assert single.returncode == 0, capsys.readouterr().err[-3000:]
    double = evaluate_cli(camvid_model, two, *extra, processes=2)
    assert double.returncode == 0, double.stdout[-2000:] + double.stderr[-3000:]
    first, second = np.load(one / "confusion.npy"), np.load(two / "confusion.npy")
    annotated = sum(int(((np.array(Image.open(CAMVID / "testannot" / name)) != 11)).sum())
                    for name in sorted(os.listdir(CAMVID / "testannot"))[:3])
    assert first.sum() == annotated  # 3 images (odd: 2 + 1 over two processes), every pixel once
    assert np.array_equal(first, second)
    a, b = (json.loads((d / "result.json").read_text()) for d in (one, two))
    assert (a["num_processes"], b["num_processes"]) == (1, 2) and a["num_images"] == b["num_images"] == 3
    assert a["metrics"] == b["metrics"]
    assert [p["images"] for p in b["timings"]["per_process"]] == [2, 1]
    assert all(0 <= p["data_wait_fraction"] <= 1 for p in b["timings"]["per_process"])
    assert b["timings"]["images_per_s"] > 0
    # the saved predictions are the same files, each image written once (CamVid ids: class indices, void = 11)
    names = sorted(p.name for p in (one / "predictions").iterdir())
    assert names == sorted(os.listdir(CAMVID / "testannot"))[:3]
    for name in names:
        assert (one / "predictions" / name).read_bytes() == (two / "predictions" / name).read_bytes()
    assert double.stdout.count("mIoU") == 1  # one report, printed by process 0 only


def test_batch_plan_is_independent_of_the_number_of_processes():
    sizes = [(4, 5), (4, 5), (3, 3), (4, 5), (3, 3), (4, 5), (9, 9)]
    plan = plan_batches(len(sizes), 2, lambda i: sizes[i])
    assert plan == [[0, 1], [2, 4], [3, 5], [6]]
    for world in (1, 2, 3, 5):
        shares = [Processes(rank=r, world_size=world).shard(plan) for r in range(world)]
        covered = sorted(i for share in shares for batch in share for i in batch)
        assert covered == list(range(len(sizes)))  # every image once, no padding by repetition


def _camvid_copy(tmp_path: Path, count=3) -> Path:
    root = tmp_path / "camvid"
    for sub in ("test", "testannot"):
        (root / sub).mkdir(parents=True)
        for name in sorted(os.listdir(CAMVID / sub))[:count]:
            (root / sub / name).write_bytes((CAMVID / sub / name).read_bytes())
    return root


def _model_and_processor(camvid_model):
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    return (AutoModelForSemanticSegmentation.from_pretrained(camvid_model).eval(),
            AutoImageProcessor.from_pretrained(camvid_model))


def test_workers_give_the_in_process_result_and_bad_labels_are_refused(camvid_model, tmp_path):
    model, processor = _model_and_processor(camvid_model)
    root = _camvid_copy(tmp_path)
    data = load_segmentation_dataset(root, split="test")
    plain = evaluate_segmentation(model, processor, data["test"], data.info, progress=False)
    workers = evaluate_segmentation(model, processor, data["test"], data.info, progress=False, num_workers=2)
    assert np.array_equal(plain.confusion, workers.confusion)
    # an annotation with a value outside CamVid's 11 classes + void is refused, naming the file ...
    name = sorted(os.listdir(root / "testannot"))[1]
    labels = np.array(Image.open(root / "testannot" / name))
    labels[:2, :2] = 40
    Image.fromarray(labels).save(root / "testannot" / name)
    with pytest.raises(EvaluationError, match=f"{name}.*outside.*40"):
        evaluate_segmentation(model, processor, data["test"], data.info, progress=False)
    # ... unless asked for, then counted as `evaluate` does, with a note
    counted = evaluate_segmentation(model, processor, data["test"], data.info, progress=False,
                                    allow_out_of_range_labels=True)
    assert any("4 annotated pixels" in note for note in counted.notes)
    # float annotations with fractions are refused too (2.7 is not class 2)
    (root / "testannot" / name).write_bytes((CAMVID / "testannot" / name).read_bytes())
    Image.fromarray(np.full(labels.shape, 2.7, np.float32), mode="F").save(root / "testannot" / "float.tif")
    Image.open(root / "test" / name).save(root / "test" / "float.png")
    (root / "testannot" / "float.png").symlink_to(root / "testannot" / "float.tif")
    data = load_segmentation_dataset(root, split="test")
    with pytest.raises(EvaluationError, match="float.png.*non-integer.*2.7"):
        evaluate_segmentation(model, processor, data["test"], data.info, progress=False)


def test_missing_annotations_are_counted(camvid_model, tmp_path, capsys):
    from hf_seg.evaluation import main

    root = _camvid_copy(tmp_path)
    name = sorted(os.listdir(root / "testannot"))[0]
    (root / "testannot" / name).unlink()
    data = load_segmentation_dataset(root, split="test")
    assert len(data["test"]) == 2 and data.missing_labels["test"] == [str(root / "test" / name)]
    out = tmp_path / "r.json"
    assert main(["--model", str(camvid_model), "--dataset", str(root), "--split", "test", "--num-workers", "0",
                 "--no-progress", "--quiet", "--output", str(out)]) == 0
    assert "1 image(s) of test have no annotation" in capsys.readouterr().err
    record = json.loads(out.read_text())
    assert record["num_images"] == 2 and any("1 image(s)" in n for n in record["notes"])


@pytest.mark.parametrize("argv, message", [
    (["--max-samples", "-1"], "positive integer"),
    (["--stride", "0"], "positive integer"),
    (["--batch-size", "0"], "positive integer"),
    (["--num-workers", "-2"], "negative"),
    (["--scales", "0"], "positive number"),
])
def test_impossible_arguments_are_refused_by_the_parser(argv, message, capsys):
    from hf_seg.evaluation import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "m", "--dataset", "d", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_saved_predictions_use_the_datasets_ids(tmp_path):
    from hf_seg.predict import label_id_table

    city = label_id_table(dataset_info("cityscapes"))
    assert city[:3].tolist() == [7, 8, 11] and city[18] == 33  # road, sidewalk, building ... bicycle: labelIds
    trainids = dataset_info("cityscapes", label_map=None)  # read from *_labelTrainIds.png: still labelIds
    assert label_id_table(trainids).tolist() == city.tolist()
    assert label_id_table(dataset_info("ade20k"))[[0, 149]].tolist() == [1, 150]
    assert label_id_table(dataset_info("camvid")).tolist() == list(range(11))
    assert label_id_table(dataset_info("ade20k"), "train") is None


# ------------------------------------------------------------------------------------------------ predict
def _predict(*args, stdin=None, processes=1) -> subprocess.CompletedProcess:
    if processes == 1:
        cmd = [sys.executable, "-m", "hf_seg.cli", "predict", *map(str, args)]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(free_port()), "-m", "hf_seg.predict", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=environment(), input=stdin,
                          timeout=600)


def test_predict_folder_with_a_corrupt_image(camvid_model, tmp_path):
    photos = tmp_path / "photos"
    (photos / "street").mkdir(parents=True)
    names = sorted(os.listdir(CAMVID / "test"))[:3]
    for i, name in enumerate(names):
        target = photos / ("street" if i else "") / name
        target.write_bytes((CAMVID / "test" / name).read_bytes())
    (photos / "street" / "broken.png").write_bytes((CAMVID / "test" / names[0]).read_bytes()[:300])  # truncated
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = _predict(photos, "--model", camvid_model, "--out", out, "--overlay", "--num-workers", "1",
                      "--no-progress")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "broken.png" in result.stderr and "skipped" in result.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    expected = [names[0], f"street/{names[1]}", f"street/{names[2]}"]
    assert written == sorted(expected + [n.replace(".png", "_overlay.png") for n in expected])
    assert not list(out.rglob(".*"))  # no temporary files left
    for name in expected:
        labels = np.array(Image.open(out / name))
        assert labels.shape == (360, 480) and labels.max() < 11
        assert Image.open(out / name.replace(".png", "_overlay.png")).width > 480  # legend panel
    # the same images through stdin, on two processes: the same label maps
    listed = "\n".join(str(photos / n) for n in expected) + "\n"
    again = _predict("-", "--model", camvid_model, "--out", tmp_path / "again", "--num-workers", "0",
                     "--no-progress", stdin=listed, processes=2)
    assert again.returncode == 0, again.stderr[-3000:]
    for name in expected:
        assert np.array_equal(np.array(Image.open(tmp_path / "again" / name)), np.array(Image.open(out / name)))


def test_sixteen_bit_png_predicts_like_its_8_bit_version(camvid_model, tmp_path):
    from hf_seg.predict import segment

    model, processor = _model_and_processor(camvid_model)
    rgb = np.array(Image.open(sorted((CAMVID / "test").iterdir())[0]).convert("L"))
    eight, sixteen = tmp_path / "eight.png", tmp_path / "sixteen.png"
    Image.fromarray(rgb, mode="L").save(eight)
    Image.fromarray(rgb.astype(np.uint16) * 257).save(sixteen)
    assert Image.open(sixteen).mode == "I;16"
    assert np.array_equal(segment(str(sixteen), model, processor), segment(str(eight), model, processor))
    # and through hf-seg predict (workers, the decoder) as well
    result = _predict(eight, sixteen, "--model", camvid_model, "--out", tmp_path / "out", "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.array_equal(np.array(Image.open(tmp_path / "out" / "eight.png")),
                          np.array(Image.open(tmp_path / "out" / "sixteen.png")))


def test_large_photo_scores_are_upsampled_in_chunks(camvid_model):
    """A 12-megapixel photo and 150 classes: full-resolution scores would be 7.2 GB; the labels come out exactly
    as from the one-shot resize while at most max_score_bytes of scores exist at once."""
    from hf_seg.inference import predict, predict_labels

    model, _ = _model_and_processor(camvid_model)
    pixel_values = torch.randn(1, 3, 72, 96)
    exact = predict(model, pixel_values, output_size=(720, 960)).argmax(1)
    chunked = predict_labels(model, pixel_values, (720, 960), max_score_bytes=720 * 960 * 4 * 2)
    assert torch.equal(exact, chunked)
