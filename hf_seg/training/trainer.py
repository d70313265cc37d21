"""``transformers.Trainer`` for segmentation with a seed recipe: its optimizer groups and schedule, seeded
augmentation order, SyncBatchNorm under multi-GPU DDP and the model's own test protocol for evaluation.

It also keeps a run from going silently wrong or losing data: a non-finite loss or gradient stops training with an
error naming the step (or skips that update when asked), weights holding NaN/inf are never saved, checkpoints are
written atomically (:mod:`hf_seg.training.checkpoints`), and SIGINT/SIGTERM end training after the current step
with a complete checkpoint (:class:`GracefulStop`)."""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from .checkpoints import (STAGING, CheckpointWriteError, RunError, finalize_checkpoint, move_files_into,
                          write_failure_message)
from .model_inputs import EpochKeySampler, TrainDataset
from .optim import build_optimizer, build_scheduler
from .recipes import ResolvedRecipe

__all__ = ["SegmentationTrainer", "TimeBudgetCallback", "GracefulStop", "StopRequested", "NonFiniteTrainingError",
           "convert_sync_batchnorm_if_needed"]


class NonFiniteTrainingError(RunError):
    """The loss, the gradients or the weights became NaN/inf; training stopped before anything broken was saved."""


class SegmentationTrainer(Trainer):
    """A ``Trainer`` whose optimizer, lr schedule and training sampler come from a :class:`ResolvedRecipe`.

    * optimizer: the recipe's SGD/AdamW with per-group lr and weight-decay multipliers (``param_groups``);
    * schedule: poly / step / cosine restarts with linear warmup, one step per optimizer update;
    * sampler: :class:`EpochKeySampler` (order and augmentation depend only on seed, epoch and index, so a resumed
      run is identical to an uninterrupted one);
    * evaluation: models whose config asks for sliding-window testing are evaluated that way (``hf_seg.inference``).
    """

    def __init__(self, *args, recipe: ResolvedRecipe, backbone_prefixes=None, eval_collator=None,
                 skip_nonfinite_steps: bool = False, run_record: dict | None = None, **kwargs):
        self.recipe = recipe
        self.eval_collator = eval_collator
        self.backbone_prefixes = backbone_prefixes  # None: the model's family's
        self.schedule_horizon = {"max_steps": recipe.max_steps}
        self.skip_nonfinite_steps = skip_nonfinite_steps
        self.skipped_steps: list[int] = []
        self.run_record = run_record  # run id + fingerprint, stored in every checkpoint's completion marker
        self._staging_dir: str | None = None
        self._step_problems: list[str] = []
        self._buffer_snapshot: dict[str, torch.Tensor] | None = None
        # hf_seg models take **kwargs but average their loss themselves; their ``accepts_loss_kwargs = False`` class
        # attribute keeps the Trainer from scaling the loss (and gradients) by the number of processes
        super().__init__(*args, **kwargs)
        self.add_callback(_NonFiniteGuard(self))

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

    # ---------------------------------------------------------------------------------------- non-finite guard
    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not bool(torch.isfinite(loss.detach()).all()):  # one host sync per micro-batch
            self._step_problems.append(f"the loss is {loss.detach().float().flatten()[0].item()}")
        return loss

    def _start_step(self) -> None:
        self._step_problems = []
        if self.skip_nonfinite_steps:  # a skipped step must not leave NaN in BatchNorm statistics either
            self._buffer_snapshot = {name: b.detach().clone() for name, b in self.model.named_buffers()
                                     if b.is_floating_point()}

    def _check_step(self) -> None:
        """Before the optimizer step: stop (or skip the update) when the loss or a gradient is not finite."""
        problems = list(self._step_problems)
        grads = [(name, p.grad) for name, p in self.model.named_parameters() if p.grad is not None]
        scaler = getattr(self.accelerator, "scaler", None)
        if grads and scaler is None:  # with a GradScaler, inf gradients are its business (it skips and rescales)
            finite = torch.stack([torch.isfinite(g).all() for _, g in grads])
            if not bool(finite.all()):
                bad = [name for (name, _), ok in zip(grads, finite.tolist()) if not ok]
                problems.append(f"{len(bad)} of {len(grads)} gradients hold NaN/inf (first: {bad[0]})")
        if not _any_process(bool(problems), self.args.device):
            return
        step = self.state.global_step + 1
        what = "; ".join(problems) or "another process saw a non-finite loss or gradient"
        if self.skip_nonfinite_steps:
            for _, p in self.model.named_parameters():
                p.grad = None  # the optimizer leaves parameters without a gradient untouched
            if self._buffer_snapshot is not None:
                buffers = dict(self.model.named_buffers())
                with torch.no_grad():
                    for name, saved in self._buffer_snapshot.items():
                        buffers[name].copy_(saved)
            self.skipped_steps.append(step)
            if self.args.process_index == 0:
                print(f"finetune: step {step}: {what}: update skipped (--skip-nonfinite-steps; "
                      f"{len(self.skipped_steps)} skipped so far)", file=sys.stderr, flush=True)
            return
        raise NonFiniteTrainingError(
            f"step {step}: {what}. Training stopped before this update; nothing from it was saved. Lower the "
            f"learning rate, check the data, or pass --skip-nonfinite-steps to skip such steps")

    def _refuse_non_finite_weights(self, where: str) -> None:
        bad = [name for name, t in self.model.state_dict().items()
               if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise NonFiniteTrainingError(f"refusing to save {where}: {len(bad)} tensors of the model hold NaN/inf "
                                         f"(first: {bad[0]}); the previous checkpoints are kept")

    # ---------------------------------------------------------------------------------------- atomic saving
    def _get_output_dir(self, trial) -> str:
        return self._staging_dir or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """``Trainer._save_checkpoint`` into ``<output>/.staging``; once every process has written its part, the main
        process adds the completion marker and renames the folder to ``checkpoint-N``, then rotates old ones."""
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        run_dir = Path(super()._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = run_dir / STAGING
        staged, final = staging / name, run_dir / name
        if self.args.should_save:
            shutil.rmtree(staged, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self._staging_dir = str(staging)
        failure = None
        try:
            super()._save_checkpoint(model, trial)
        except NonFiniteTrainingError:
            raise
        except Exception as err:  # noqa: BLE001 - reported below with what was kept
            failure = err
        finally:
            self._staging_dir = None
        if not _all_processes(failure is None, self.args.device):
            if self.args.should_save:
                shutil.rmtree(staged, ignore_errors=True)  # free what the failed write took
            message = (write_failure_message(name, run_dir, failure) if failure is not None else
                       f"could not write {name} in {run_dir}: another process failed to write its part")
            raise CheckpointWriteError(message) from failure
        if self.args.should_save:
            best = self.state.best_model_checkpoint
            if best and Path(best).parent == staging:
                self.state.best_model_checkpoint = str(run_dir / Path(best).name)
                self.state.save_to_json(str(staged / "trainer_state.json"))
            try:
                finalize_checkpoint(staged, final, self.state.global_step, self.run_record)
            except OSError as err:
                shutil.rmtree(staged, ignore_errors=True)
                raise CheckpointWriteError(write_failure_message(name, run_dir, err)) from err
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Refuse weights holding NaN/inf. Inside a checkpoint (already staged) save directly; the final model is
        written to a staging folder first and its files moved into ``output_dir`` one rename each."""
        target = output_dir or self.args.output_dir
        self._refuse_non_finite_weights(f"the model to {target}")
        if self._staging_dir is not None:
            return super().save_model(output_dir, _internal_call)
        token = _shared_token(self.args.device)
        staged = Path(target) / STAGING / f"model-{token}"
        failure = None
        try:
            super().save_model(str(staged), _internal_call)
        except Exception as err:  # noqa: BLE001
            failure = err
        if not _all_processes(failure is None, self.args.device):
            if self.args.should_save:
                shutil.rmtree(staged, ignore_errors=True)
            message = (write_failure_message("the model", target, failure) if failure is not None else
                       f"could not write the model in {target}: another process failed to write its part")
            raise CheckpointWriteError(message) from failure
        if self.args.should_save:
            try:
                move_files_into(staged, Path(target))
            except OSError as err:
                shutil.rmtree(staged, ignore_errors=True)
                raise CheckpointWriteError(write_failure_message("the model", target, err)) from err
        self.accelerator.wait_for_everyone()

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


class _NonFiniteGuard(TrainerCallback):
    def __init__(self, trainer: SegmentationTrainer):
        self.trainer = trainer

    def on_step_begin(self, args, state, control, **kwargs):
        self.trainer._start_step()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer._check_step()


class GracefulStop(TrainerCallback):
    """SIGINT / SIGTERM while this is active (a context manager around the run): the current step finishes, a
    complete checkpoint is saved and training stops (``received`` holds the signal). A second signal interrupts at
    once. With several processes, any process's signal stops all of them at the same step."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, say=print):
        self.received: int | None = None
        self.training_done = False  # after training, a signal interrupts the evaluation (StopRequested)
        self.say = say
        self._previous: dict = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:  # asked twice: stop now
            self.__exit__()
            signal.raise_signal(signum)
            return
        self.received = signum
        self.say(f"finetune: {signal.Signals(signum).name} received: finishing this step and saving a checkpoint "
                 f"(send it again to stop at once)")

    @property
    def name(self) -> str | None:
        return signal.Signals(self.received).name if self.received is not None else None

    def on_step_end(self, args, state, control, **kwargs):
        stop = _any_process(self.received is not None, args.device)
        if stop:
            if self.received is None:
                self.received = signal.SIGTERM  # another process was told to stop
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_prediction_step(self, args, state, control, **kwargs):
        if self.training_done and _any_process(self.received is not None, args.device):
            raise StopRequested(self.name)


class StopRequested(Exception):
    """Raised out of the final evaluation when SIGINT/SIGTERM arrived (the model is saved by then)."""


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _any_process(flag: bool, device) -> bool:
    """``flag`` of any process (every process must take the same branch, or they wait for each other forever)."""
    if not _distributed():
        return flag
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _all_processes(flag: bool, device) -> bool:
    return not _any_process(not flag, device)


def _shared_token(device) -> str:
    """A random name every process agrees on (the main process's)."""
    token = [uuid.uuid4().hex[:12]]
    if _distributed():
        import torch.distributed as dist

        dist.broadcast_object_list(token, src=0)
    return token[0]


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
