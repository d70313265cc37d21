"""How the MIT CSAIL ADE20K models were trained (CSAILVision/semantic-segmentation-pytorch at 8f27c9b): ``train.py``,
``config/ade20k-*.yaml`` and ``mit_semseg/config/defaults.py`` (the two README rows without a config file use the
defaults); ``tests/data/original_recipes/csail.json`` holds the transcription with file and line.

* SGD lr 0.02 (encoder and decoder alike), momentum 0.9 (``beta1``), weight decay 1e-4 on conv/linear weights only
  (``group_weight``: biases and BatchNorm parameters get 0), poly 0.9 over ``epoch_iters x num_epoch`` iterations
  (5000 x 20/25/30/40), no warm-up, no gradient clipping.
* Data: per GPU a batch of ``batch_size_per_gpu`` images (2, 3 for MobileNetV2) of one orientation, a short side drawn
  from (300, 375, 450, 525, 600) per GPU batch with the long side capped at 1000 (sizes truncated to int), a random
  flip, padding to a multiple of ``padding_constant`` (8, or 32 for UPerNet/HRNet); no crop, no colour jitter. The
  README's training server had 8 GPUs.
* BatchNorm: ``SynchronizedBatchNorm2d`` with momentum 0.001 and a bias-corrected running average
  (``mit_semseg/lib/nn/modules/batchnorm.py``), statistics synchronised over the 8 GPUs.
"""

from __future__ import annotations

from ...training.recipes import ParamRule, Pipeline, Recipe, RowRecipe, Schedule

REPO = "CSAILVision/semantic-segmentation-pytorch@8f27c9b"

_PIPELINE = Pipeline(scale=None, ratio_range=None, short_sides=(300, 375, 450, 525, 600), max_size=1000,
                     size_rounding="floor", crop_size=None, cat_max_ratio=1.0, flip_prob=0.5, photometric=False,
                     size_divisor=8)

RECIPES = [
    Recipe(
        name="csail-ade20k", family="csail", dataset="ade20k",
        description="CSAIL ADE20K: SGD 0.02, poly 0.9, 2 images x 8 GPUs, 20 epochs x 5000 iterations",
        optimizer="sgd", lr=0.02, weight_decay=1e-4, momentum=0.9, schedule=Schedule("poly", power=0.9),
        iterations=100000, samples_per_gpu=2, gpus=8, pipeline=_PIPELINE,
        rules=(ParamRule("bias", decay_mult=0.0), ParamRule("batch_norm", decay_mult=0.0)),
        bn_momentum=0.001, bn_bias_corrected=True,
        original_rules={"group_weight": "weight decay on conv/linear weights; none on biases and BatchNorm"},
        source=f"{REPO} train.py, mit_semseg/config/defaults.py, mit_semseg/dataset.py, "
               f"mit_semseg/lib/nn/modules/batchnorm.py, README.md (8 GPUs)",
        notes=("a multi-image batch is padded to a common size with the ignore label; the original leaves label 0 "
               "(wall) there (mit_semseg/dataset.py: batch_segms starts as zeros)",
               "the short side is drawn per image, the original draws one per GPU batch of same-orientation images"),
    ),
]

# (encoder, decoder) -> (where the values come from, images per GPU, epochs, padding_constant). Two README rows have
# no config file and take mit_semseg/config/defaults.py; the 2018 ResNet50dilated + C1_deepsup row took the argparse
# defaults of train.py at that time (the same values).
_DEFAULTS = "mit_semseg/config/defaults.py"
_ROWS = {
    ("mobilenetv2dilated", "c1_deepsup"): ("config/ade20k-mobilenetv2dilated-c1_deepsup.yaml", 3, 20, 8),
    ("mobilenetv2dilated", "ppm_deepsup"): (_DEFAULTS, 2, 20, 8),
    ("resnet18dilated", "c1_deepsup"): (_DEFAULTS, 2, 20, 8),
    ("resnet18dilated", "ppm_deepsup"): ("config/ade20k-resnet18dilated-ppm_deepsup.yaml", 2, 20, 8),
    ("resnet50dilated", "c1_deepsup"): ("train.py@6140e2a (argparse defaults)", 2, 20, 8),
    ("resnet50dilated", "ppm_deepsup"): ("config/ade20k-resnet50dilated-ppm_deepsup.yaml", 2, 20, 8),
    ("resnet101dilated", "ppm_deepsup"): ("config/ade20k-resnet101dilated-ppm_deepsup.yaml", 2, 25, 8),
    ("resnet50", "upernet"): ("config/ade20k-resnet50-upernet.yaml", 2, 30, 32),
    ("resnet101", "upernet"): ("config/ade20k-resnet101-upernet.yaml", 2, 40, 32),
    ("hrnetv2", "c1"): ("config/ade20k-hrnetv2.yaml", 2, 30, 32),
}


def _changes(per_gpu, epochs, padding) -> dict:
    return {"samples_per_gpu": per_gpu, "iterations": 5000 * epochs, "size_divisor": padding,
            "description": f"CSAIL ADE20K: SGD 0.02, poly 0.9, {per_gpu} images x 8 GPUs, {epochs} epochs x 5000 "
                           f"iterations"}


ROWS = {
    f"csail-ade20k-{encoder}-{decoder.replace('_', '-')}": RowRecipe(
        "csail-ade20k", config, _changes(per_gpu, epochs, padding))
    for (encoder, decoder), (config, per_gpu, epochs, padding) in _ROWS.items()
}


def row_of(config) -> str | None:
    key = (getattr(config, "arch_encoder", None), getattr(config, "arch_decoder", None))
    return f"csail-ade20k-{key[0]}-{key[1].replace('_', '-')}" if key in _ROWS else None


def recipe_for(config, dataset: str, entry=None) -> str:
    """Every (encoder, decoder) pair is one zoo row (ADE20K only): the row follows from the architecture."""
    return row_of(config) or "csail-ade20k"


def loss_weights(config) -> dict:
    weights = {"decoder": 1.0}
    if str(getattr(config, "arch_decoder", "")).endswith("deepsup"):
        weights["deep_supervision"] = float(config.deep_sup_scale)
    return weights


def recipe_from_original(original: dict, base: Recipe) -> Recipe | None:
    """``base`` with the TRAIN / DATASET values of a yacs config (``config/ade20k-*.yaml``); ``None`` without them."""
    from dataclasses import replace

    from ...training.recipes import override

    train, data = original.get("TRAIN") or {}, original.get("DATASET") or {}
    if not train:
        return None
    lr_encoder = float(train.get("lr_encoder", base.lr))
    lr_decoder = float(train.get("lr_decoder", lr_encoder))
    if lr_encoder != lr_decoder:
        raise ValueError(f"different encoder and decoder learning rates ({lr_encoder}, {lr_decoder}) are not "
                         f"supported (every released config uses one)")
    if str(train.get("optim", "SGD")).upper() != "SGD":
        raise ValueError(f"optimizer {train.get('optim')!r} is not supported (SGD)")
    epochs = int(train.get("num_epoch", base.iterations // 5000))
    epoch_iters = int(train.get("epoch_iters", 5000))
    per_gpu = int(train.get("batch_size_per_gpu", base.samples_per_gpu))
    recipe = replace(base, lr=lr_encoder, momentum=float(train.get("beta1", base.momentum)),
                     weight_decay=float(train.get("weight_decay", base.weight_decay)),
                     schedule=replace(base.schedule, power=float(train.get("lr_pow", base.schedule.power))),
                     iterations=epochs * epoch_iters, samples_per_gpu=per_gpu,
                     description=f"CSAIL ADE20K: SGD {lr_encoder:g}, poly, {per_gpu} images x {base.gpus} GPUs, "
                                 f"{epochs} epochs x {epoch_iters} iterations")
    pipeline = {}
    if "imgSizes" in data:
        sizes = data["imgSizes"]
        pipeline["short_sides"] = tuple(int(s) for s in (sizes if isinstance(sizes, (list, tuple)) else [sizes]))
    if "imgMaxSize" in data:
        pipeline["max_size"] = int(data["imgMaxSize"])
    if "padding_constant" in data:
        pipeline["size_divisor"] = int(data["padding_constant"])
    if "random_flip" in data:
        pipeline["flip_prob"] = 0.5 if data["random_flip"] else 0.0
    return override(recipe, **pipeline) if pipeline else recipe
