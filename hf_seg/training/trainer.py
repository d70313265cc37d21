"""``transformers.Trainer`` for segmentation with a seed recipe: its optimizer groups and schedule, seeded
augmentation order, SyncBatchNorm under multi-GPU DDP and the model's own test protocol for evaluation."""

from __future__ import annotations

import time

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from .model_inputs import EpochKeySampler, TrainDataset
from .optim import BACKBONE_PREFIXES, build_optimizer, build_scheduler
from .recipes import ResolvedRecipe

__all__ = ["SegmentationTrainer", "TimeBudgetCallback", "convert_sync_batchnorm_if_needed"]


class SegmentationTrainer(Trainer):
    """A ``Trainer`` whose optimizer, lr schedule and training sampler come from a :class:`ResolvedRecipe`.

    * optimizer: the recipe's SGD/AdamW with per-group lr and weight-decay multipliers (``param_groups``);
    * schedule: poly / step / cosine restarts with linear warmup, one step per optimizer update;
    * sampler: :class:`EpochKeySampler` (order and augmentation depend only on seed, epoch and index, so a resumed
      run is identical to an uninterrupted one);
    * evaluation: models whose config asks for sliding-window testing are evaluated that way (``hf_seg.inference``).
    """

    def __init__(self, *args, recipe: ResolvedRecipe, backbone_prefixes=BACKBONE_PREFIXES, eval_collator=None,
                 **kwargs):
        self.recipe = recipe
        self.eval_collator = eval_collator
        self.backbone_prefixes = tuple(backbone_prefixes)
        self.schedule_horizon = {"max_steps": recipe.max_steps}
        # hf_seg models take **kwargs but average their loss themselves; their ``accepts_loss_kwargs = False`` class
        # attribute keeps the Trainer from scaling the loss (and gradients) by the number of processes
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = build_optimizer(self.model if model is None else model, self.recipe,
                                             self.backbone_prefixes)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = build_scheduler(optimizer or self.optimizer, self.recipe, self.schedule_horizon)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def get_eval_dataloader(self, eval_dataset=None):
        if self.eval_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

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


class TimeBudgetCallback(TrainerCallback):
    """Fit training into ``seconds`` of wall time: from the step times measured so far, shorten the lr schedule's
    horizon to the number of steps that fit (the schedule still ends properly) and stop there. Never lengthens a run.
    With several processes the main process decides and broadcasts, so every process stops at the same step."""

    def __init__(self, seconds: float, trainer: SegmentationTrainer, probe_steps: int = 3, every: int = 10):
        self.seconds = float(seconds)
        self.trainer = trainer
        self.probe_steps = probe_steps
        self.every = every
        self.stop_at = None
        self._t0 = self._t_probe = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()
        self._step0 = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        done = state.global_step - self._step0
        if done == 1:
            self._t_probe = time.perf_counter()  # the first step pays one-off costs: measure from here
        elif done > self.probe_steps and (done - self.probe_steps) % self.every == 1:
            now = time.perf_counter()
            per_step = (now - self._t_probe) / (done - 1)
            fit = state.global_step + int((self.seconds - (now - self._t0)) / per_step)
            fit = _broadcast(max(fit, state.global_step + 1))
            horizon = self.trainer.schedule_horizon
            if fit < horizon["max_steps"]:
                horizon["max_steps"] = fit
                self.stop_at = fit
                state.max_steps = fit
                _set_progress_total(self.trainer, fit)
        if self.stop_at is not None and state.global_step >= self.stop_at:
            control.should_training_stop = True
            control.should_save = True
        return control


def _set_progress_total(trainer, steps: int) -> None:
    """Make the Trainer's progress bar count to the steps that will run (its total and ETA stay honest)."""
    for callback in trainer.callback_handler.callbacks:
        bar = getattr(callback, "training_bar", None)
        if bar is not None:
            bar.total = steps
            bar.refresh()


def _broadcast(value: int) -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return int(box[0])
    return value
