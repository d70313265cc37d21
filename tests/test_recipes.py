"""Training recipes against the originals: every zoo row's dry-run JSON (preset name, and a folder the converter made
from a fixture-style checkpoint) is compared with the facts transcribed from the original configs
(``tests/data/original_recipes/<family>.json``, each fact with the file and line it came from). Optimizer groups are
checked parameter by parameter through the converters' rename maps with mmcv's ``custom_keys`` rule as the oracle;
learning rates with mmcv's ``LrUpdaterHook`` formulas written out here from the transcribed ``lr_config``."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from fixture_utils import fixture_cases
from hf_seg import zoo
from hf_seg.conversion.config_reader import read_config
from hf_seg.conversion.converter import convert_original
from hf_seg.label_sets import get_label_set
from hf_seg.training.arguments import parse_args
from hf_seg.training.build import dry_run
from hf_seg.families import get_family
from hf_seg.training.recipes import Recipe, family_rows, list_recipes, recipe_for, row_recipe

DATA = Path(__file__).resolve().parent / "data" / "original_recipes"
FAMILIES = ("setr", "regionproxy", "semask", "unept", "csail")
FIXTURE_DIRS = {"setr": "setr", "regionproxy": "regproxy", "semask": "semask", "unept": "unept"}


def transcription(family: str) -> dict:
    return json.loads((DATA / f"{family}.json").read_text())["rows"]


def facts_of(family: str, row: str) -> dict:
    return {key: value for key, (value, _source) in transcription(family)[row]["facts"].items()}


def dry(model, *extra, tmp="/tmp/hf_seg_dry_run") -> dict:
    args, targs = parse_args(["--model", str(model), "--dry-run", "--output-dir", str(tmp), "--report-to", "none",
                              *extra])
    return dry_run(args, targs)


# ------------------------------------------------------------------------------------------------ oracles
def mmcv_custom_keys(custom_keys: dict, name: str) -> tuple[float, float]:
    """mmcv DefaultOptimizerConstructor: keys tried longest first (ties alphabetically), substring of the
    parameter's full name; the first hit sets lr_mult / decay_mult."""
    for key in sorted(sorted(custom_keys), key=len, reverse=True):
        if key in name:
            return float(custom_keys[key].get("lr_mult", 1.0)), float(custom_keys[key].get("decay_mult", 1.0))
    return 1.0, 1.0


def mmcv_lr(facts: dict, base_lr: float, it: int) -> float:
    """lr of a group with initial lr ``base_lr`` at iteration ``it`` (LrUpdaterHook, by_epoch=False)."""
    policy = facts["lr_config.policy"]
    max_iters = facts["max_iters"]
    if policy == "poly":
        min_lr = facts.get("lr_config.min_lr", 0.0)
        lr = (base_lr - min_lr) * (1 - it / max_iters) ** facts.get("lr_config.power", 1.0) + min_lr
    elif policy == "step":
        step, gamma = facts["lr_config.step"], facts.get("lr_config.gamma", 0.1)  # mmcv default gamma
        exp = it // step if isinstance(step, int) else next((i for i, s in enumerate(step) if it < s), len(step))
        lr = base_lr * gamma ** exp
    elif policy == "CosineRestart":
        periods, weights = facts["lr_config.periods"], facts["lr_config.restart_weights"]
        cumulative = [sum(periods[:i + 1]) for i in range(len(periods))]
        idx = next(i for i, c in enumerate(cumulative) if it < c)
        start = 0 if idx == 0 else cumulative[idx - 1]
        alpha = min((it - start) / periods[idx], 1)
        target = base_lr * facts["lr_config.min_lr_ratio"]
        lr = target + 0.5 * weights[idx] * (base_lr - target) * (math.cos(math.pi * alpha) + 1)
    else:
        raise AssertionError(policy)
    if facts.get("lr_config.warmup") == "linear" and it < facts["lr_config.warmup_iters"]:
        k = (1 - it / facts["lr_config.warmup_iters"]) * (1 - facts["lr_config.warmup_ratio"])
        lr = lr * (1 - k)
    return lr


def csail_lr(facts: dict, base_lr: float, it: int) -> float:
    """train.py adjust_learning_rate: lr * (1 - cur_iter / max_iters) ** lr_pow, max_iters = epoch_iters x epochs."""
    max_iters = facts["TRAIN.epoch_iters"] * facts["TRAIN.num_epoch"]
    return base_lr * (1 - it / max_iters) ** facts["TRAIN.lr_pow"]


# ------------------------------------------------------------------------------------------------ checks
def check_against_original(report: dict, family: str, row: str) -> None:
    """The dry-run JSON of ``row`` states what the original config says (one process, the default scaling)."""
    facts = facts_of(family, row)
    assert report["max_grad_norm"] in (0, 0.0, None), "no original clips gradients"
    assert report["num_processes"] == 1
    assert report["max_steps"] > 0
    if family == "csail":
        check_csail(report, facts)
        return
    assert facts["optimizer_config"] == {} and "grad_clip" not in facts["optimizer_config"]
    optimizer = report["optimizer"]
    assert optimizer["type"] == facts["optimizer.type"]
    assert optimizer["lr"] == facts["optimizer.lr"]
    assert optimizer["weight_decay"] == facts["optimizer.weight_decay"]
    if optimizer["type"] == "SGD":
        assert optimizer["momentum"] == facts["optimizer.momentum"] and optimizer["nesterov"] is False
    else:
        assert optimizer["betas"] == facts["optimizer.betas"]
        assert optimizer["eps"] == facts.get("optimizer.eps", 1e-8)  # torch.optim.AdamW's default
    custom_keys = facts["optimizer.paramwise_cfg.custom_keys"]
    assert report["original_param_rules"] == {"custom_keys": custom_keys}
    for group in report["param_groups"]:
        assert math.isclose(group["lr"], facts["optimizer.lr"] * group["lr_mult"], rel_tol=1e-12)
        assert math.isclose(group["weight_decay"], facts["optimizer.weight_decay"] * group["decay_mult"],
                            rel_tol=1e-12)
        assert (group["lr_mult"], group["decay_mult"]) in {mmcv_custom_keys(custom_keys, k) for k in
                                                            list(custom_keys) + ["(none)"]}
    assert report["max_steps"] == facts["max_iters"]
    assert report["per_device_batch_size"] == facts["data.samples_per_gpu"]
    assert report["gradient_accumulation_steps"] == facts["gpus"]
    assert report["effective_batch_size"] == facts["data.samples_per_gpu"] * facts["gpus"]
    for step, lrs in report["lr_at_steps"].items():
        for group, lr in zip(report["param_groups"], lrs):
            assert math.isclose(lr, mmcv_lr(facts, group["lr"], int(step)), rel_tol=1e-9, abs_tol=1e-15), (step, lr)
    aug = report["augmentation"]
    assert aug["img_scale"] == facts["train_pipeline.Resize.img_scale"]
    if "train_pipeline.Resize.ratio_choices" in facts:
        assert aug["ratio_choices"] == facts["train_pipeline.Resize.ratio_choices"] and "ratio_range" not in aug
    else:
        assert aug["ratio_range"] == facts["train_pipeline.Resize.ratio_range"] and "ratio_choices" not in aug
    assert aug["crop_size"] == facts["train_pipeline.RandomCrop.crop_size"]
    assert aug["cat_max_ratio"] == facts["train_pipeline.RandomCrop.cat_max_ratio"]
    assert aug["cat_max_checks"] == 10
    assert aug["flip_prob"] == facts.get("train_pipeline.RandomFlip.prob", facts.get("train_pipeline.RandomFlip.flip_ratio"))
    assert (aug["photometric"] is not None) == ("train_pipeline.PhotoMetricDistortion" in facts)
    assert aug["pad"]["size"] == facts["train_pipeline.Pad.size"] and facts["train_pipeline.Pad.seg_pad_val"] == 255
    assert report["num_labels"] == facts["num_classes"]
    labels = get_label_set(zoo.get_entry(row).dataset)
    reduce = facts.get("train_pipeline.LoadAnnotations.reduce_zero_label", False)
    if labels.name == "coco_stuff":
        # SeMask's COCO-Stuff 10k files (tools/convert_datasets/coco_stuff10k.py) store 0 = unlabelled and the classes
        # as 1..171, so reduce_zero_label gives the 171 training ids hf_seg's coco_stuff reading gives
        assert reduce is True and labels.num_labels == 171
    else:
        assert labels.reduce_labels == reduce


def check_csail(report: dict, facts: dict) -> None:
    optimizer = report["optimizer"]
    assert optimizer["type"] == facts["optimizer.type"] == facts["TRAIN.optim"] == "SGD"
    assert optimizer["lr"] == facts["TRAIN.lr_encoder"] == facts["TRAIN.lr_decoder"]
    assert optimizer["momentum"] == facts["TRAIN.beta1"] and optimizer["weight_decay"] == facts["TRAIN.weight_decay"]
    assert report["max_steps"] == facts["TRAIN.epoch_iters"] * facts["TRAIN.num_epoch"]
    assert report["per_device_batch_size"] == facts["TRAIN.batch_size_per_gpu"]
    assert report["gradient_accumulation_steps"] == facts["gpus"]
    for step, lrs in report["lr_at_steps"].items():
        for group, lr in zip(report["param_groups"], lrs):
            assert math.isclose(lr, csail_lr(facts, group["lr"], int(step)), rel_tol=1e-9, abs_tol=1e-15)
    aug = report["augmentation"]
    assert aug["short_sides"] == facts["DATASET.imgSizes"] and aug["max_size"] == facts["DATASET.imgMaxSize"]
    assert aug["pad"]["size_divisor"] == facts["DATASET.padding_constant"]
    assert aug["flip_prob"] == (0.5 if facts["DATASET.random_flip"] else 0.0)
    assert aug["crop_size"] is None and aug["photometric"] is None and aug["size_rounding"] == "floor"
    assert report["num_labels"] == facts["DATASET.num_class"]
    # train.py passes deep_sup_scale to the SegmentationModule only for arch_decoder *deepsup
    deep_sup = facts["TRAIN.deep_sup_scale"] if report["row"].endswith("-deepsup") else None
    assert report["loss_weights"].get("deep_supervision") == deep_sup
    bn = report["batch_norm"]
    assert bn["momentum"] == facts["batch_norm.momentum"] and bn["bias_corrected_running_average"] is True
    groups = {(g["lr"], g["weight_decay"]): set(g["rules"]) for g in report["param_groups"]}
    assert groups == {(facts["TRAIN.lr_encoder"], facts["TRAIN.weight_decay"]): {"default"},
                      (facts["TRAIN.lr_encoder"], 0.0): {"bias", "batch_norm"}}


def check_csail_groups_by_module_type(model_name: str, report: dict) -> None:
    """train.py group_weight: conv/linear weights decay, their biases and every BatchNorm parameter do not."""
    with torch.device("meta"):
        model = zoo.build_model(model_name)
    expected = {}
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) or param_name == "bias":
                expected[full] = 0.0
            else:
                assert isinstance(module, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)), full
                expected[full] = 1.0
    got = {name: group["decay_mult"] for group in report["param_groups"] for name in group["params"]}
    assert got == expected


# ------------------------------------------------------------------------------------------------ tables
def test_every_zoo_row_has_a_recipe_and_a_transcription():
    rows = {e.name: e.family for e in zoo.list_models()}
    tables = {row: family for family in FAMILIES for row in family_rows(family)}
    transcribed = {row: family for family in FAMILIES for row in transcription(family)}
    assert tables == rows
    assert transcribed == rows
    for family in FAMILIES:
        for recipe in get_family(family).hook("recipes"):
            assert recipe.family == family and recipe.max_grad_norm == 0.0
    assert {r.name for r in list_recipes()} >= {"finetune", "setr-hlg-ade20k", "semask-cityscapes", "csail-ade20k"}


def test_recipe_dicts_round_trip():
    for recipe in list_recipes():
        assert Recipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    with pytest.raises(ValueError, match="unknown recipe fields"):
        Recipe.from_dict({**list_recipes()[0].to_dict(), "learning_rate": 1})


@pytest.mark.parametrize("family", FAMILIES)
def test_dry_run_of_every_preset_equals_the_original_config(family, tmp_path):
    for row in transcription(family):
        report = dry(row, tmp=tmp_path)
        assert report["row"] == row and report["recipe_from"] == f"zoo row {row}"
        check_against_original(report, family, row)
        if family == "csail":
            check_csail_groups_by_module_type(row, report)
        n_params = sum(g["num_params"] for g in report["param_groups"])
        names = [name for g in report["param_groups"] for name in g["params"]]
        assert n_params == len(set(names)), "every parameter is in exactly one group"


def test_presets_carry_their_recipe_in_the_config(tmp_path):
    """A save_pretrained copy of a preset resolves the same recipe as the preset name."""
    from hf_seg.families import get_family

    row = "setr-mla-ade20k-512-bs8"  # bs 8: 1 image x 8 GPUs, lr 0.001
    config = zoo.build_config(row, hidden_size=64, num_hidden_layers=4, num_attention_heads=2,
                              mla_index=[0, 1, 2, 3])  # a narrow copy: the recipe does not depend on the width
    assert config.training_recipe["row"] == row
    folder = tmp_path / "copy"
    get_family("setr").model_class(config).save_pretrained(folder)
    zoo.build_processor(row).save_pretrained(folder)
    copy = dry(folder, tmp=tmp_path)
    preset = dry(row, tmp=tmp_path)
    for key in ("optimizer", "max_grad_norm", "schedule", "lr_at_steps", "max_steps", "per_device_batch_size",
                "gradient_accumulation_steps", "augmentation", "original", "row"):
        assert copy[key] == preset[key], key
    check_against_original(copy, "setr", row)


# ------------------------------------------------------------------------------------------- converted rows
def _kind_cases(family: str) -> dict[str, list[Path]]:
    cases = fixture_cases(FIXTURE_DIRS[family])
    return {case.name: case for case in cases if (case / "config.py").is_file()}


def _case_for_row(family: str, row: str, cases: dict) -> Path | None:
    """A fixture checkpoint of the row's architecture when there is one, else any of the family's."""
    prefer = {
        "setr": [("deit", "naive_deit_whole"), ("mla", "mla_vit_whole"), ("pup", "pup_vit_whole"),
                 ("naive", "naive_vit_whole"), ("naive", "naive_deit_whole")],
        "regionproxy": [("r26", "hybrid_r26s32_midn1_ade"), ("r50", "hybrid_r26s32_midn1_ade"),
                        ("b16", "vit_b16deit_mid2_city"), ("vit", "vit_t16_mid4_ade"), ("vit", "vit_s16_mid1_res2_pad")],
        "semask": [("cityscapes", "city_tiny_w7_sq112"), ("-l-", "ade_large_var_w7_sq64"), ("", "ade_b_w12_ohem_sq96"),
                   ("", "city_tiny_w7_sq112")],
        "unept": [("deit", "deit_c16_96x96"), ("res50", "res50_c21_64x64"), ("res50", "res50_c24_64x144_nonsquare"),
                  ("", "res50_c24_64x144_nonsquare")],
    }[family]
    for word, case in prefer:
        if word in row and case in cases:
            return cases[case]
    return next(iter(cases.values()), None)


def _convert_as(case: Path, config_name: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    config = out / config_name
    shutil.copy(case / "config.py", config)
    checkpoints = sorted(case.glob("*.pth"))
    convert_original(config, checkpoints, out / "model")
    return out / "model"


RECIPE_KEYS = ("optimizer", "max_grad_norm", "schedule", "max_steps", "per_device_batch_size",
               "gradient_accumulation_steps", "num_processes", "augmentation", "original", "original_param_rules",
               "row", "original_config")


def _converted_rows():
    # the recipe follows the original config's file name, whatever the checkpoint's size; rows of an architecture
    # without a fixture (SETR-HLG) convert another fixture of their family under their config's name
    return [pytest.param(family, row, id=row) for family in ("setr", "regionproxy", "semask", "unept")
            for row in family_rows(family)]


def _check_converted_row(family, row, tmp_path):
    cases = _kind_cases(family)
    case = _case_for_row(family, row, cases)
    if case is None:
        pytest.skip(f"no {family} fixture checkpoint")
    spec = family_rows(family)[row]
    folder = _convert_as(case, Path(spec.original_config).name, tmp_path / "converted")
    record = json.loads((folder / "config.json").read_text())["training_recipe"]
    assert record["row"] == row and record["original_config"] == Path(spec.original_config).name
    converted = dry(folder, tmp=tmp_path / "run")
    preset = dry(row, tmp=tmp_path / "run")
    for key in RECIPE_KEYS:
        if key == "original_config":
            assert converted[key] == Path(preset[key]).name
            continue
        assert converted[key] == preset[key], key
    # the fixture has its own class count; everything else is the row's
    converted["num_labels"] = preset["num_labels"]
    check_against_original(converted, family, row)


@pytest.mark.parametrize("family,row", _converted_rows())
def test_converted_folder_resolves_its_rows_recipe(family, row, tmp_path):
    """Every row of the families with fixture checkpoints: the converter, given the original config's file name,
    makes a folder whose dry run is the preset's and the original's."""
    _check_converted_row(family, row, tmp_path)


def _natural_row(family: str, case: Path) -> str:
    """The first zoo row whose architecture the fixture case is a small copy of (any row of the family otherwise:
    the rows of a family share their parameter rules)."""
    cases = _kind_cases(family)
    rows = [row for row in family_rows(family) if "hlg" not in row]
    return next((row for row in rows if _case_for_row(family, row, cases) == case), rows[0])


def _all_cases():
    out = []
    for family, folder in FIXTURE_DIRS.items():
        for case in fixture_cases(folder):
            if (case / "config.py").is_file():
                out.append(pytest.param(family, case, id=f"{family}-{case.name}"))
    return out


@pytest.mark.parametrize("family,case", _all_cases())
def test_param_groups_per_parameter_through_the_rename_map(family, case, tmp_path):
    """Every parameter of a converted fixture is in the group mmcv's custom_keys give its ORIGINAL name (the
    conversion report's rename map), with that group's lr and weight decay."""
    row = _natural_row(family, case)
    spec = family_rows(family)[row]
    folder = _convert_as(case, Path(spec.original_config).name, tmp_path / "converted")
    renamed = json.loads((folder / "conversion_report.json").read_text())["converted"]
    original_of = {new: old for old, new in renamed.items()}
    report = dry(folder, tmp=tmp_path / "run")
    preset = dry(row, tmp=tmp_path / "run")
    for key in RECIPE_KEYS:
        assert report[key] == (Path(preset[key]).name if key == "original_config" else preset[key]), key
    facts = facts_of(family, row)
    custom_keys = facts["optimizer.paramwise_cfg.custom_keys"]
    base_lr, base_wd = facts["optimizer.lr"], facts["optimizer.weight_decay"]
    checked = 0
    for group in report["param_groups"]:
        for name in group["params"]:
            assert name in original_of, f"{name} has no original parameter"
            lr_mult, decay_mult = mmcv_custom_keys(custom_keys, original_of[name])
            assert math.isclose(group["lr"], base_lr * lr_mult, rel_tol=1e-12), (name, original_of[name])
            assert math.isclose(group["weight_decay"], base_wd * decay_mult, rel_tol=1e-12), (name, original_of[name])
            checked += 1
    # and every converted original parameter (buffers aside) is one of them
    buffers = ("running_mean", "running_var", "num_batches_tracked", "relative_position_index")
    assert checked == len([k for k in renamed if not k.endswith(buffers)])


def test_recipe_from_the_config_training_sections(tmp_path):
    """A config that states its training sections (as the released configs do after _base_ merging) resolves them
    from the file itself; the transcribed facts are written back as config text here."""
    family, row, case_name = "semask", "semask-t-fpn-ade20k-512", None
    cases = _kind_cases(family)
    case = cases.get("city_tiny_w7_sq112") or next(iter(cases.values()))
    facts = facts_of(family, row)
    text = (case / "config.py").read_text() + f"""
optimizer = dict(type='AdamW', lr={facts['optimizer.lr']}, betas={tuple(facts['optimizer.betas'])},
                 weight_decay={facts['optimizer.weight_decay']},
                 paramwise_cfg=dict(custom_keys={facts['optimizer.paramwise_cfg.custom_keys']!r}))
optimizer_config = dict()
lr_config = dict(policy='poly', warmup='linear', warmup_iters={facts['lr_config.warmup_iters']},
                 warmup_ratio={facts['lr_config.warmup_ratio']}, power=1.0, min_lr=0.0, by_epoch=False)
runner = dict(type='IterBasedRunner', max_iters={facts['max_iters']})
data = dict(samples_per_gpu={facts['data.samples_per_gpu']})
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', img_scale={tuple(facts['train_pipeline.Resize.img_scale'])},
         ratio_range={facts['train_pipeline.Resize.ratio_choices']!r}),
    dict(type='RandomCrop', crop_size={tuple(facts['train_pipeline.RandomCrop.crop_size'])}, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Pad', size={tuple(facts['train_pipeline.Pad.size'])}, pad_val=0, seg_pad_val=255),
]
"""
    (tmp_path / "config.py").write_text(text)
    convert_original(tmp_path / "config.py", sorted(case.glob("*.pth")), tmp_path / "model")
    record = json.loads((tmp_path / "model" / "config.json").read_text())["training_recipe"]
    assert record["row"] == "" and record["how"].startswith("training sections of config.py")
    report = dry(tmp_path / "model", tmp=tmp_path / "run")
    report["num_labels"] = facts["num_classes"]
    check_against_original(report, family, row)
    assert report["augmentation"]["ratio_choices"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def test_folder_without_a_recorded_recipe_gets_the_family_choice(tmp_path):
    """An old folder (no training_recipe) still gets the original recipe of its architecture, by explicit config
    fields: a SETR-MLA model gets the MLA recipe, HLG the HLG one, not substrings of names."""
    from hf_seg.families import family_module

    setr = family_module("setr")
    mla = zoo.build_config("setr-mla-cityscapes-768-40k")
    del mla.training_recipe
    assert recipe_for("setr", mla, "cityscapes").name == "setr-mla-cityscapes"
    hlg = zoo.build_config("setr-hlg-small-ade20k")
    del hlg.training_recipe
    assert recipe_for("setr", hlg, "ade20k").name == "setr-hlg-ade20k"
    naive = setr.tiny_config()
    assert recipe_for("setr", naive, "pascal_context").name == "setr-naive-pascal-context"
    csail = zoo.build_config("csail-ade20k-resnet50-upernet")
    del csail.training_recipe
    assert recipe_for("csail", csail, "").iterations == 150000  # its row: 30 epochs


def test_named_row_and_recipe_flags(tmp_path):
    report = dry("setr-naive-ade20k-512", "--recipe", "setr-hlg-small-ade20k", tmp=tmp_path)
    assert report["optimizer"]["type"] == "AdamW" and report["recipe"] == "setr-hlg-ade20k"
    report = dry("setr-naive-ade20k-512", "--max-grad-norm", "1.0", "--per-device-train-batch-size", "4",
                 tmp=tmp_path)
    assert report["max_grad_norm"] == 1.0
    assert (report["per_device_batch_size"], report["gradient_accumulation_steps"]) == (4, 4)
    assert row_recipe("setr-hlg-large-ade20k").notes  # the detection-config row says where its recipe comes from


# ------------------------------------------------------------------------------------------------ CSAIL
def _csail_rows():
    out = []
    for row in family_rows("csail"):
        marks = () if row == "csail-ade20k-mobilenetv2dilated-c1-deepsup" else (pytest.mark.slow,)
        out.append(pytest.param(row, marks=marks, id=row))
    return out


@pytest.mark.parametrize("row", _csail_rows())
def test_csail_checkpoint_made_by_the_original_code_converts_to_its_rows_recipe(row, tmp_path):
    """CSAIL has no stored fixtures: the original code (mit-semseg) builds the row's encoder/decoder, train.py's
    checkpoint files and a yacs config are written, the converter makes the folder. Its dry run is the preset's, and
    every parameter's weight decay is what train.py's group_weight gives the ORIGINAL module it came from."""
    csail_reference = pytest.importorskip("csail_reference")
    if not csail_reference.available():
        pytest.skip("mit-semseg (the original CSAIL code) is not installed")
    config = zoo.build_config(row)
    ref = csail_reference.Reference(config.arch_encoder, config.arch_decoder, fc_dim=config.fc_dim, num_class=150, seed=0,
                                    input_hw=(64, 64))
    try:
        # the helper's config states padding_constant 8; the row's config file says what the original used
        padding = facts_of("csail", row)["DATASET.padding_constant"]
        ref.config_path.write_text(ref.config_path.read_text().replace("padding_constant: 8",
                                                                       f"padding_constant: {padding}"))
        convert_original(ref.config_path, ref.checkpoints, tmp_path / "model")
        _check_csail_conversion(row, ref, tmp_path)
    finally:
        shutil.rmtree(ref.dir, ignore_errors=True)  # full-size checkpoints: do not leave them in /tmp


def _check_csail_conversion(row, ref, tmp_path):
    record = json.loads((tmp_path / "model" / "config.json").read_text())["training_recipe"]
    assert record["row"] == row
    report = dry(tmp_path / "model", tmp=tmp_path / "run")
    preset = dry(row, tmp=tmp_path / "run")
    for key in RECIPE_KEYS:
        if key != "original_config":
            assert report[key] == preset[key], key
    check_against_original(report, "csail", row)
    renamed = json.loads((tmp_path / "model" / "conversion_report.json").read_text())["converted"]
    original_of = {new: old for old, new in renamed.items()}
    decays = {}  # train.py group_weight on the original modules
    for prefix, net in (("encoder", ref.encoder), ("decoder", ref.decoder)):
        for name, module in net.named_modules():
            for param_name, _ in module.named_parameters(recurse=False):
                decays[f"{prefix}.{name}.{param_name}" if name else f"{prefix}.{param_name}"] = (
                    1.0 if isinstance(module, (torch.nn.Linear, torch.nn.modules.conv._ConvNd))
                    and param_name == "weight" else 0.0)
    checked = 0
    for group in report["param_groups"]:
        for name in group["params"]:
            assert group["decay_mult"] == decays[original_of[name]], (name, original_of[name])
            checked += 1
    assert checked == len(decays)
