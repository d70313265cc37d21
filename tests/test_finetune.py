"""Finetuning (scripts/finetune.py, hf_seg.training): recipes, the transforms.v2 pipeline, the Trainer glue on real
CamVid samples (tests/data/camvid), a 2-process ``accelerate launch --cpu`` run, overfitting, exact resume, one step
per family, and the errors a user can make."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torchvision import tv_tensors

import hf_seg  # noqa: F401  (registers the Auto classes)
from hf_seg import HfSegImageProcessor
from hf_seg.families import families, family_module, family_of_config
from hf_seg.label_sets import get_label_set
from hf_seg.training import Pipeline, get_recipe, list_recipes, override, recipe_for, scale_recipe
from hf_seg.training.model_inputs import EpochKeySampler, SegmentationCollator
from hf_seg.training.finetune import main as finetune_main
from hf_seg.training.optim import lr_factor, param_groups
from hf_seg.training.transforms import CatMaxRatioCrop, build_train_transforms, seeded

ROOT = Path(__file__).resolve().parents[1]
CAMVID = Path(__file__).resolve().parent / "data" / "camvid"
CAMVID_LABELS = get_label_set("camvid")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
       "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# ------------------------------------------------------------------------------------------------ helpers
def tiny_semask_config(num_labels=11, **overrides):
    """A small stride-4 model that trains fast on CPU: the family's tiny_config() with the 32-channel decoder that the
    overfitting and resume tests were tuned with."""
    return family_module("semask").tiny_config(**{"num_labels": num_labels, "decoder_channels": 32, **overrides})


def save_model_dir(path: Path, config, id2label=None, eval_size=(96, 128), seed=0) -> Path:
    id2label = id2label if id2label is not None else CAMVID_LABELS.id2label
    config.num_labels = len(id2label)
    config.id2label = dict(id2label)
    config.label2id = {v: k for k, v in id2label.items()}
    torch.manual_seed(seed)
    model = family_of_config(config).model_class(config)
    model.save_pretrained(path)
    HfSegImageProcessor(resize_mode="fixed", size={"height": eval_size[0], "width": eval_size[1]}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return save_model_dir(tmp_path_factory.mktemp("tiny_semask"), tiny_semask_config())


def camvid_subset(path: Path, train: int | None = None, test: int | None = 0, names=None) -> Path:
    """A CamVid-layout folder with the first ``train`` training pairs (and ``test`` test pairs)."""
    for split, count in (("train", train), ("test", test)):
        if count == 0:
            continue
        (path / split).mkdir(parents=True, exist_ok=True)
        (path / f"{split}annot").mkdir(parents=True, exist_ok=True)
        files = sorted(os.listdir(CAMVID / split))[:count]
        for name in files:
            shutil.copy(CAMVID / split / name, path / split / name)
            shutil.copy(CAMVID / f"{split}annot" / name, path / f"{split}annot" / name)
    return path


def run_finetune(*args, callbacks=None) -> int:
    return finetune_main([str(a) for a in args], callbacks=callbacks)


FAST = ["--train-scale", "128", "96", "--crop-size", "64", "--per-device-train-batch-size", "2",
        "--gradient-accumulation-steps", "1", "--recipe", "finetune", "--report-to", "none",
        "--disable-tqdm", "true", "--check-samples", "4", "--dataloader-num-workers", "0"]


# ------------------------------------------------------------------------------------------------ recipes
def test_scaling_to_processes():
    recipe = get_recipe("setr-ade20k")  # 2 images x 8 GPUs
    accumulate = scale_recipe(recipe, num_processes=2)
    assert (accumulate.per_device_batch_size, accumulate.gradient_accumulation_steps) == (2, 4)
    assert accumulate.effective_batch_size == 16 and accumulate.lr == recipe.lr
    assert accumulate.max_steps == recipe.iterations
    linear = scale_recipe(recipe, num_processes=2, scaling="linear")
    assert linear.gradient_accumulation_steps == 1 and linear.lr == pytest.approx(recipe.lr * 4 / 16)
    assert linear.max_steps == recipe.iterations * 4
    short = scale_recipe(recipe, num_processes=1, max_steps=100, per_device_batch_size=4)
    assert (short.max_steps, short.per_device_batch_size, short.gradient_accumulation_steps) == (100, 4, 4)
    assert any("max-steps" in n for n in short.notes)


def test_schedules_follow_mmcv():
    poly = scale_recipe(get_recipe("setr-ade20k"), 1, max_steps=100)
    assert lr_factor(0, poly, 1e-3) == 1.0
    assert lr_factor(100, poly, 1e-3) == pytest.approx(0.1)  # min_lr 1e-4 of base 1e-3
    assert lr_factor(50, poly, 1e-3) == pytest.approx(0.9 * 0.5 ** 0.9 + 0.1)
    warm = scale_recipe(get_recipe("semask-ade20k"), 1, max_steps=80000)
    assert lr_factor(0, warm, 1e-4) == pytest.approx(1e-6)
    assert lr_factor(750, warm, 1e-4) == pytest.approx((1 - 750 / 80000) * (1 - 0.5 * (1 - 1e-6)))
    step = scale_recipe(get_recipe("unept-ade20k"), 1)
    assert lr_factor(125999, step, 1e-4) == 1.0 and lr_factor(126000, step, 1e-4) == pytest.approx(0.1)
    restart = scale_recipe(get_recipe("regproxy-cr-ade20k"), 1)
    assert lr_factor(10000, restart, 6e-5) == pytest.approx(0.5)  # half of the first 20k period
    assert lr_factor(20000, restart, 6e-5) == pytest.approx(0.5)  # restart at weight 0.5
    assert lr_factor(159999, restart, 6e-5) == pytest.approx(0.0, abs=1e-6)


def test_param_groups_lr_multipliers_and_no_decay():
    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.LayerNorm(4))
            self.backbone.pos_embed = torch.nn.Parameter(torch.zeros(1, 4))
            self.decode_head = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4),
                                                   torch.nn.Conv2d(4, 2, 1))

    def group_of(groups, name):
        return next(g for g in groups if name in g["names"])

    toy = Toy()
    unept = param_groups(toy, scale_recipe(get_recipe("unept-ade20k"), 1), ("backbone",))
    assert group_of(unept, "backbone.0.weight")["lr"] == pytest.approx(1e-5)
    assert group_of(unept, "decode_head.0.weight")["lr"] == pytest.approx(1e-4)
    regproxy = param_groups(toy, scale_recipe(get_recipe("regproxy-poly-ade20k"), 1), ("backbone",))
    assert group_of(regproxy, "backbone.pos_embed")["weight_decay"] == 0.0
    assert group_of(regproxy, "backbone.1.weight")["weight_decay"] == 0.0  # LayerNorm
    assert group_of(regproxy, "decode_head.1.weight")["weight_decay"] == 0.01  # BN: mmseg's "norm" key misses "bn"
    csail = param_groups(toy, scale_recipe(get_recipe("csail-ade20k"), 1), ("backbone",))
    assert group_of(csail, "decode_head.1.weight")["weight_decay"] == 0.0
    assert group_of(csail, "decode_head.0.bias")["weight_decay"] == 0.0
    assert group_of(csail, "decode_head.0.weight")["weight_decay"] == 1e-4
    setr = param_groups(toy, scale_recipe(get_recipe("setr-ade20k"), 1), ("backbone",))
    assert group_of(setr, "decode_head.2.weight")["lr"] == pytest.approx(1e-2)
    assert group_of(setr, "backbone.0.weight")["lr"] == pytest.approx(1e-3)


# ------------------------------------------------------------------------------------------------ transforms
def test_pipeline_moves_image_and_mask_together():
    processor = HfSegImageProcessor(resize_mode="none", do_normalize=False, do_rescale=False)
    height, width = 60, 80
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    image[0] = torch.arange(width, dtype=torch.uint8)[None].expand(height, width)  # red = column index
    mask = torch.arange(width)[None].expand(height, width).clone() // 10  # class = column // 10
    tf = build_train_transforms(Pipeline(scale=(80, 60), ratio_range=None, crop_size=(40, 40), cat_max_ratio=1.0,
                                         flip_prob=0.5, photometric=False), processor)
    flips = set()
    for seed in range(8):
        with seeded(seed):
            out_image, out_mask = tf(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert isinstance(out_image, tv_tensors.Image) and isinstance(out_mask, tv_tensors.Mask)
        assert out_image.shape == (3, 40, 40) and out_mask.shape == (40, 40)
        assert torch.equal(out_image[0].long() // 10, out_mask)  # same pixels moved for both
        flips.add(bool(out_mask[0, 0] > out_mask[0, -1]))
    assert flips == {True, False}
    # the same seed gives the same sample
    with seeded(3):
        a = tf(tv_tensors.Image(image), tv_tensors.Mask(mask))
    with seeded(3):
        b = tf(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_small_images_are_padded_with_the_ignore_index_after_normalising():
    processor = HfSegImageProcessor(resize_mode="none")
    tf = build_train_transforms(Pipeline(scale=None, ratio_range=None, crop_size=(50, 70), flip_prob=0,
                                         photometric=False), processor, ignore_index=255)
    image = torch.full((3, 30, 40), 128, dtype=torch.uint8)
    out_image, out_mask = tf(tv_tensors.Image(image), tv_tensors.Mask(torch.zeros(30, 40, dtype=torch.long)))
    assert out_image.shape == (3, 50, 70)
    assert (out_mask[30:] == 255).all() and (out_mask[:, 40:] == 255).all() and (out_mask[:30, :40] == 0).all()
    assert (out_image[:, 30:] == 0).all()  # mmseg pads the normalised image with 0


def test_cat_max_ratio_crop_retries_for_balanced_crops():
    mask = torch.zeros(100, 100, dtype=torch.long)
    mask[:, 60:] = 1

    def balanced(ratio):
        crop, count = CatMaxRatioCrop((20, 20), cat_max_ratio=ratio), 0
        for seed in range(40):
            with seeded(seed):
                out = crop(tv_tensors.Mask(mask))
            _, counts = out.unique(return_counts=True)
            count += len(counts) > 1 and counts.max().item() / counts.sum().item() < 0.75
        return count

    # one try finds a balanced window with probability 9/81; mmseg's 10 tries with probability ~0.7
    assert balanced(0.75) >= 18 and balanced(1.0) <= 12


def test_sampler_and_collator():
    sampler = EpochKeySampler(5, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(5)) and list(sampler) == first
    sampler.set_epoch(2)
    assert sorted(list(sampler)) == list(range(10, 15))
    batch = SegmentationCollator(ignore_index=255, size_divisor=8)(
        [{"pixel_values": torch.ones(3, 5, 6), "labels": torch.zeros(5, 6, dtype=torch.long)},
         {"pixel_values": torch.ones(3, 7, 4), "labels": torch.zeros(7, 4, dtype=torch.long)}])
    assert batch["pixel_values"].shape == (2, 3, 8, 8) and batch["labels"].shape == (2, 8, 8)
    assert batch["labels"][0, 5:].eq(255).all() and batch["pixel_values"][1, :, :, 4:].eq(0).all()


# ------------------------------------------------------------------------------------------------ training runs
@pytest.fixture
def busy_default_port():
    """Hold accelerate's default rendezvous port 29500, as another training job on the machine would."""
    import socket

    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 29500))
        sock.listen(1)
    except OSError:
        pass  # already taken by someone else: the condition this fixture creates
    yield 29500
    sock.close()


def test_two_process_accelerate_launch_on_camvid(tiny_dir, tmp_path, busy_default_port):
    # the relaunched processes meet on a free port, so a job holding 29500 does not make this run fail
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "scripts" / "finetune.py"), "--model", str(tiny_dir), "--dataset", str(CAMVID),
           "--output-dir", str(out), "--max-steps", "3", "--save-steps", "3", *FAST]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    assert (out / "model.safetensors").is_file() and (out / "checkpoint-3" / "model.safetensors").is_file()
    assert not list(out.glob("**/pytorch_model.bin"))
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    metrics = json.loads((out / "eval_results.json").read_text())
    assert 0.0 <= metrics["eval_mean_iou"] <= 1.0
    card = (out / "README.md").read_text()
    assert "model-index" in card and "mean_iou" in card


def test_tiny_model_overfits_four_camvid_images(tiny_dir, tmp_path):
    data = camvid_subset(tmp_path / "camvid4", train=4, test=0)
    out = tmp_path / "run"
    rc = run_finetune("--model", tiny_dir, "--dataset", data, "--output-dir", out, "--eval-split", "train",
                      "--recipe", "finetune", "--learning-rate", "2e-3", "--max-steps", "150",
                      "--per-device-train-batch-size", "4", "--gradient-accumulation-steps", "1",
                      "--no-augmentation", "--train-scale", "128", "96", "--crop-size", "0",
                      "--save-strategy", "no", "--report-to", "none", "--disable-tqdm", "true", "--seed", "0")
    assert rc == 0
    metrics = json.loads((out / "eval_results.json").read_text())
    assert metrics["eval_overall_accuracy"] >= 0.9, metrics


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tiny_dir, tmp_path):
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def __init__(self, step):
            self.step = step

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= self.step:
                control.should_save = True
                control.should_training_stop = True
            return control

    common = ["--model", tiny_dir, "--dataset", CAMVID, "--max-steps", "6", "--save-steps", "3",
              "--eval-split", "none", "--seed", "3", *FAST]
    assert run_finetune(*common, "--output-dir", tmp_path / "straight") == 0
    assert run_finetune(*common, "--output-dir", tmp_path / "cut", callbacks=[StopAt(3)]) == 0
    assert json.loads((tmp_path / "cut" / "trainer_state.json").read_text())["global_step"] == 3
    assert run_finetune(*common, "--output-dir", tmp_path / "cut",
                        "--resume-from-checkpoint", tmp_path / "cut" / "checkpoint-3") == 0
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "cut" / "model.safetensors")
    initial = load_file(tiny_dir / "model.safetensors")
    assert straight.keys() == resumed.keys()
    assert any(not torch.equal(straight[k], initial[k]) for k in straight)
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("family", sorted(families()))
def test_every_family_trains_one_step_through_the_script(family, tmp_path):
    module = family_module(family)
    assert hasattr(module, "tiny_config") and "tiny_config" in module.__all__, f"hf_seg.modeling.{family}"
    # the model averages its own loss: the Trainer must not rescale it by the number of processes
    assert families()[family].model_class.accepts_loss_kwargs is False
    config = module.tiny_config()
    size = getattr(config, "image_size", None) or 64  # UN-EPT: any multiple of 8 (its targets come from the pipeline)
    size = list(size) if isinstance(size, (list, tuple)) else [size, size]
    model_dir = save_model_dir(tmp_path / "model", config, eval_size=tuple(size))
    rc = run_finetune("--model", model_dir, "--dataset", CAMVID, "--output-dir", tmp_path / "run",
                      "--max-steps", "1", "--eval-split", "none", "--save-strategy", "no",
                      *FAST[:3], "--crop-size", *map(str, size), *FAST[5:])
    assert rc == 0
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_run_trains_without_gradient_clipping_and_writes_recipe_json(tiny_dir, tmp_path, capsys):
    """No original clips gradients: the Trainer's default max_grad_norm=1.0 is switched off, and the recipe JSON
    that --dry-run prints is written next to the checkpoints."""
    from hf_seg.training.build import build_trainer
    from hf_seg.training.finetune import parse_args

    data = camvid_subset(tmp_path / "camvid2", train=2, test=0)
    args, targs = parse_args(["--model", str(tiny_dir), "--dataset", str(data), "--output-dir", str(tmp_path / "run"),
                              "--max-steps", "1", "--eval-split", "none", *FAST])
    built = build_trainer(args, targs)
    assert built["trainer"].args.max_grad_norm == 0.0
    saved = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert saved == json.loads(json.dumps(built["report"]))
    for key in ("optimizer", "param_groups", "max_grad_norm", "max_steps", "per_device_batch_size",
                "gradient_accumulation_steps", "num_processes", "lr_at_steps", "augmentation", "num_labels", "notes"):
        assert key in saved, key
    assert saved["max_grad_norm"] == 0.0 and saved["num_labels"] == 11
    assert "gradient clipping: none" in capsys.readouterr().out
    rc = run_finetune("--model", tiny_dir, "--dataset", data, "--output-dir", tmp_path / "dry", "--dry-run",
                      "--max-steps", "1", *FAST)
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["param_groups"] == saved["param_groups"] and not (tmp_path / "dry").exists()


def test_freeze_batchnorm_keeps_statistics_and_affine_parameters(tiny_dir, tmp_path):
    from hf_seg.training.build import build_trainer
    from hf_seg.training.finetune import parse_args

    data = camvid_subset(tmp_path / "camvid2", train=2, test=0)
    args, targs = parse_args(["--model", str(tiny_dir), "--dataset", str(data), "--output-dir", str(tmp_path / "run"),
                              "--max-steps", "1", "--eval-split", "none", "--save-strategy", "no",
                              "--freeze-batchnorm", *FAST])
    built = build_trainer(args, targs)
    norms = [m for m in built["model"].modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and built["report"]["batch_norm"]["frozen"] is True
    before = [(m.running_mean.clone(), m.weight.detach().clone()) for m in norms]
    built["trainer"].train()
    for m, (mean, weight) in zip(norms, before):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.weight.detach(), weight)
    frozen = {f"{n}.{p}" for n, mod in built["model"].named_modules() if mod in norms
              for p, _ in mod.named_parameters(recurse=False)}
    optimised = {name for g in built["report"]["param_groups"] for name in g["params"]}
    assert frozen and not frozen & optimised


def pascal_context_folder(path: Path, count: int = 3) -> Path:
    """A Pascal-Context (VOC2010) layout with random images and label maps 0..59 (0 = background)."""
    root = path / "VOC2010"
    for sub in ("JPEGImages", "SegmentationClassContext", "ImageSets/SegmentationContext"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"2008_{i:06d}" for i in range(count)]
    for i, name in enumerate(names):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        label = np.zeros((60, 80), dtype=np.uint8)  # background
        label[10:40, 10:50] = 1 + i
        label[35:, 45:] = 59
        Image.fromarray(label).save(root / "SegmentationClassContext" / f"{name}.png")
    (root / "ImageSets/SegmentationContext/train.txt").write_text("\n".join(names) + "\n")
    (root / "ImageSets/SegmentationContext/val.txt").write_text(names[0] + "\n")
    return path


@pytest.mark.parametrize("label_set", ["pascal_context_60", "pascal_context"])
def test_pascal_context_folder_trains_the_model_s_label_set(label_set, tmp_path):
    """The originals train Pascal-Context with 60 classes (background = class 0); a 59-class model ignores the
    background. The same folder trains either, without --ignore-mismatched-sizes."""
    from hf_seg.training.build import build_trainer
    from hf_seg.training.finetune import parse_args

    labels = get_label_set(label_set)
    config = family_module("setr").tiny_config(num_labels=labels.num_labels, image_size=32)
    model_dir = save_model_dir(tmp_path / "model", config, id2label=labels.id2label, eval_size=(32, 32))
    data = pascal_context_folder(tmp_path / "pc")
    args, targs = parse_args(["--model", str(model_dir), "--dataset", str(data), "--output-dir",
                              str(tmp_path / "run"), "--max-steps", "2", "--eval-split", "none", "--save-strategy",
                              "no", *FAST[:3], "--crop-size", "32", *FAST[5:]])
    built = build_trainer(args, targs)
    assert built["model"].config.num_labels == labels.num_labels
    assert built["report"]["labels"]["reduce_labels"] == labels.reduce_labels
    seen = torch.cat([built["train_dataset"][i]["labels"].flatten() for i in range(3)]).unique().tolist()
    if labels.num_labels == 60:
        assert 0 in seen and 59 in seen  # background trained as class 0
    else:
        assert 0 in seen and 58 in seen and 59 not in seen  # 1..59 -> 0..58, background ignored
    built["trainer"].train()
    assert built["trainer"].state.global_step == 2


# ------------------------------------------------------------------------------------------------ user errors
def _write_pair(root: Path, split: str, name: str, image_hw, label: np.ndarray):
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (*image_hw, 3), dtype=np.uint8)).save(root / split / name)
    Image.fromarray(label.astype(np.uint8)).save(root / f"{split}annot" / name)


def _error_run(capsys, model, data, *extra):
    rc = run_finetune("--model", model, "--dataset", data, "--output-dir", data / "out", "--max-steps", "1",
                      "--eval-split", "none", *FAST, *extra)
    return rc, capsys.readouterr().err


def test_error_dataset_without_images(tiny_dir, tmp_path, capsys):
    data = tmp_path / "empty"
    (data / "train").mkdir(parents=True)
    (data / "trainannot").mkdir()
    rc, err = _error_run(capsys, tiny_dir, data)
    assert rc == 2 and ("no image with a label" in err or "no images" in err), err


def test_error_label_ids_outside_the_classes(tiny_dir, tmp_path, capsys):
    data = tmp_path / "bad_ids"
    label = np.zeros((40, 50), dtype=np.uint8)
    label[:10] = 17  # CamVid has ids 0..10 and 11 = void
    _write_pair(data, "train", "a.png", (40, 50), label)
    rc, err = _error_run(capsys, tiny_dir, data)
    assert rc == 2 and "[17]" in err and "outside [0, 11)" in err, err


def test_error_image_and_label_sizes_differ(tiny_dir, tmp_path, capsys):
    data = tmp_path / "sizes"
    _write_pair(data, "train", "a.png", (40, 50), np.zeros((30, 50), dtype=np.uint8))
    rc, err = _error_run(capsys, tiny_dir, data)
    assert rc == 2 and "(40, 50)" in err and "(30, 50)" in err, err


def test_classifier_for_other_classes_needs_ignore_mismatched_sizes(tmp_path, capsys):
    five = {i: f"class{i}" for i in range(5)}
    model_dir = save_model_dir(tmp_path / "five", tiny_semask_config(), id2label=five)
    data = camvid_subset(tmp_path / "camvid2", train=2, test=0)
    rc, err = _error_run(capsys, model_dir, data)
    assert rc == 2 and "5 classes" in err and "--ignore-mismatched-sizes" in err, err
    rc, _ = _error_run(capsys, model_dir, data, "--ignore-mismatched-sizes", "--save-strategy", "no")
    assert rc == 0
    config = json.loads((data / "out" / "config.json").read_text())
    assert len(config["id2label"]) == 11 and config["id2label"]["0"] == "Sky"


def test_images_smaller_than_the_crop(tiny_dir, tmp_path, capsys):
    data = tmp_path / "small"
    _write_pair(data, "train", "a.png", (20, 24), np.ones((20, 24), dtype=np.uint8))
    rc, err = _error_run(capsys, tiny_dir, data, "--no-pad-small")
    assert rc == 2 and "smaller than the crop" in err, err
    rc, _ = _error_run(capsys, tiny_dir, data, "--save-strategy", "no")  # default: padded with the ignore index
    assert rc == 0


def test_recipe_override_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown recipe fields"):
        override(get_recipe("finetune"), not_a_field=1)
    with pytest.raises(KeyError, match="did you mean"):
        get_recipe("setr-ade2k")
