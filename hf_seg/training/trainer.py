"""``transformers.Trainer`` for segmentation with a seed recipe: its optimizer groups and schedule, seeded
augmentation order, SyncBatchNorm under multi-GPU DDP and the model's own test protocol for evaluation."""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer

from .data import EpochKeySampler, TrainDataset
from .optim import BACKBONE_PREFIXES, build_optimizer, build_scheduler
from .recipes import ResolvedRecipe

__all__ = ["SegmentationTrainer", "convert_sync_batchnorm_if_needed"]


class SegmentationTrainer(Trainer):
    """A ``Trainer`` whose optimizer, lr schedule and training sampler come from a :class:`ResolvedRecipe`.

    * optimizer: the recipe's SGD/AdamW with per-group lr and weight-decay multipliers (``param_groups``);
    * schedule: poly / step / cosine restarts with linear warmup, one step per optimizer update;
    * sampler: :class:`EpochKeySampler` (order and augmentation depend only on seed, epoch and index, so a resumed
      run is identical to an uninterrupted one);
    * evaluation: models whose config asks for sliding-window testing are evaluated that way (``hf_seg.inference``).
    """

    def __init__(self, *args, recipe: ResolvedRecipe, backbone_prefixes=BACKBONE_PREFIXES, **kwargs):
        self.recipe = recipe
        self.backbone_prefixes = tuple(backbone_prefixes)
        super().__init__(*args, **kwargs)
        # hf_seg models take **kwargs but average their loss themselves: without this the Trainer would multiply
        # the loss (and the gradients) by the number of processes, as for token-count-normalised LM losses
        self.model_accepts_loss_kwargs = False

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = build_optimizer(self.model if model is None else model, self.recipe,
                                             self.backbone_prefixes)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = build_scheduler(optimizer or self.optimizer, self.recipe)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if isinstance(dataset, TrainDataset):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochKeySampler(len(dataset), seed=seed, shuffle=True)
        return super()._get_train_sampler(train_dataset)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        config = getattr(self.model, "config", None)
        if getattr(config, "test_mode", "whole") != "slide" or prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        from ..inference import predict  # the model's own test protocol (sliding windows), no TTA

        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            logits = predict(model, inputs["pixel_values"], scales=[1.0], flip=False)
        return None, logits, inputs.get("labels")


def convert_sync_batchnorm_if_needed(model: nn.Module, args) -> tuple[nn.Module, bool]:
    """BatchNorm -> SyncBatchNorm when training with more than one process on GPUs (the seeds' SyncBN)."""
    distributed = getattr(args, "world_size", 1) > 1
    on_gpu = getattr(args, "device", torch.device("cpu")).type == "cuda"
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if distributed and on_gpu and has_bn:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model), True
    return model, False
