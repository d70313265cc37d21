"""Finetune any hf_seg model on a segmentation dataset with ``transformers.Trainer`` (``accelerate`` underneath).

    accelerate launch scripts/finetune.py --model <zoo row or folder> --dataset ADEChallengeData2016 \\
        --output-dir runs/ade --recipe original
    accelerate launch --num_processes 2 --cpu scripts/finetune.py --model DIR --dataset data/camvid --max-steps 20

``--model``: a zoo preset (its architecture, random weights), a converted/pretrained folder or a hub id.
``--dataset``: a dataset folder (ADE20K, Cityscapes, Pascal-Context, COCO-Stuff, CamVid layouts) or a hub dataset
with image + annotation columns, read by :mod:`hf_seg.data`. ``--recipe original`` (default) is the original schedule of
the model (see :mod:`hf_seg.training.recipes`; the model carries it in ``config.training_recipe``), scaled to the number of processes; ``--recipe NAME`` picks a named
recipe. Every ``TrainingArguments`` flag passes through (``--output-dir``, ``--max-steps``, ``--save-steps``,
``--resume-from-checkpoint``, ``--seed``, ``--bf16``, ``--gradient-checkpointing``, ``--push-to-hub`` ...); explicit
batch size / accumulation / learning rate / ``--max-grad-norm`` flags override the recipe's (no original clips
gradients, so the recipe sets ``max_grad_norm`` 0 instead of the Trainer's 1.0). ``--dry-run`` prints the fully
resolved recipe as JSON (:mod:`hf_seg.training.report`) and exits; a run writes the same JSON as ``recipe.json``.
"""

from __future__ import annotations

import json
import os
import sys

from ..hub import TRAINING_STATE
from .arguments import FinetuneArguments, parse_args
from .build import build_trainer, dry_run, family_of
from .checkpoints import STAGING
from .run_guard import LOCK_NAME, RUN_RECORD

# what a run leaves in its output folder besides the model stays off the hub: checkpoints and logs, the folder's lock,
# the run record (its fingerprint names local paths) and interrupted checkpoint writes
PUSH_IGNORE = (*TRAINING_STATE, LOCK_NAME, RUN_RECORD, f"{STAGING}/**")

__all__ = ["FinetuneArguments", "parse_args", "build_trainer", "dry_run", "run", "main", "family_of"]


def _recipe_record(resolved) -> dict:
    return {"recipe": resolved.recipe.to_dict(), "per_device_batch_size": resolved.per_device_batch_size,
            "gradient_accumulation_steps": resolved.gradient_accumulation_steps, "max_steps": resolved.max_steps,
            "lr": resolved.lr, "num_processes": resolved.num_processes, "scaling": resolved.scaling}


def _on_main(targs, step):
    """Run ``step`` on the main process only; its result, or its :class:`RunError`, reaches every process."""
    from .checkpoints import RunError

    result, error = None, None
    if targs.process_index == 0:
        try:
            result = step()
        except RunError as err:
            error = str(err)
    if targs.world_size > 1:
        import torch.distributed as dist

        box = [result, error]
        dist.broadcast_object_list(box, src=0)
        result, error = box
    if error is not None:
        raise RunError(error)
    return result


def check_checkpoint_fits(checkpoint, model) -> None:
    """Refuse a checkpoint whose weights are not this model's (names and shapes, read from the safetensors headers):
    ``Trainer`` would load it non-strictly and train whatever did not fit from its random initialisation."""
    from pathlib import Path

    from safetensors import safe_open

    from .checkpoints import RunError

    files = sorted(Path(checkpoint).glob("*.safetensors"))
    if not files:
        raise RunError(f"{checkpoint} holds no model weights (*.safetensors)")
    shapes = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            shapes.update({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    mismatched = [f"{k} {shapes[k]} vs {expected[k]}" for k in sorted(set(shapes) & set(expected))
                  if shapes[k] != expected[k]]
    if missing or unexpected or mismatched:
        parts = [f"{len(v)} {what}: {', '.join(v[:5])}{', ...' if len(v) > 5 else ''}" for what, v in
                 (("missing", missing), ("unexpected", unexpected), ("with other shapes", mismatched)) if v]
        raise RunError(f"the weights in {checkpoint} are not this model's ({'; '.join(parts)}): it belongs to "
                       f"another model")


def run(args, targs, callbacks=None) -> dict:
    """Load, check, train, evaluate and save; returns the metrics and where everything is.

    The output folder is locked for the run; a fresh run refuses a folder holding another run (unless
    ``--overwrite-output-dir``), a resumed run only continues a complete checkpoint of the same run (fingerprint,
    unless ``--force-resume``). SIGINT/SIGTERM end the run after the current step with a complete checkpoint
    (``exit_code`` 128 + signal)."""
    import uuid

    from .checkpoints import RunError, write_text_atomic
    from ..hub import push_folder
    from .hub import finetune_model_card
    from .run_guard import OutputDirLock, prepare_output_dir, resume_checkpoint, run_fingerprint, write_run_record
    from .trainer import GracefulStop, StopRequested

    _ = targs.device  # sets up the distributed state, so world_size / process_index are right
    lock = OutputDirLock(targs.output_dir)
    _on_main(targs, lock.acquire)
    try:
        stale = getattr(lock, "stale_holder", None) if targs.process_index == 0 else None
        resume = targs.resume_from_checkpoint
        if isinstance(resume, str) and resume.lower() in ("false", "none", ""):
            resume = None
        notes = [] if resume else _on_main(targs, lambda: prepare_output_dir(targs.output_dir,
                                                                               args.overwrite_output_dir))
        built = build_trainer(args, targs, callbacks)
        trainer, model, resolved = built["trainer"], built["model"], built["recipe"]
        eval_dataset, eval_name, say, is_main = (built["eval_dataset"], built["eval_name"], built["say"],
                                                 built["is_main"])
        dataset_name, push = built["dataset_name"], built["push"]
        if stale and stale.get("pid"):
            say(f"note: took over the lock of an earlier run that is no longer running (pid {stale.get('pid')})")
        training = {**_recipe_record(resolved), "seed": targs.seed, "data_seed": targs.data_seed,
                    "processor_kwargs": args.processor_kwargs}
        fingerprint = run_fingerprint(args.model, model.config, args.dataset, dataset_name,
                                      len(built["train_dataset"]), training)
        if resume:
            def resolve():
                path, run, more = resume_checkpoint(targs.output_dir, str(resume), fingerprint, args.force_resume)
                return str(path), run, more

            checkpoint, run_id, more = _on_main(targs, resolve)
            notes += more
            check_checkpoint_fits(checkpoint, model)
            say(f"resuming from {checkpoint}")
        else:
            checkpoint, run_id = None, _on_main(targs, lambda: uuid.uuid4().hex)
        for note in notes:
            say(f"note: {note}")
        trainer.run_record = {"run_id": run_id, "fingerprint": fingerprint}
        trainer.skip_nonfinite_steps = args.skip_nonfinite_steps
        if is_main:
            write_run_record(targs.output_dir, run_id, fingerprint, "running")

        with GracefulStop(say) as stop:
            trainer.add_callback(stop)
            train_result = trainer.train(resume_from_checkpoint=checkpoint)
            trained = stop.received is None  # else stopped early, with a complete checkpoint
            if trained:
                trainer.save_model()
                trainer.save_state()
            stop.training_done = True
            metrics = {"train": train_result.metrics}
            if eval_dataset is not None and stop.received is None:
                try:
                    metrics["eval"] = trainer.evaluate()
                    trainer.save_metrics("eval", metrics["eval"])
                except StopRequested:
                    pass  # the trained model is saved; stop.received says why the evaluation stopped
            if stop.received is not None:
                step = trainer.state.global_step
                if trained:
                    say(f"finetune: stopped by {stop.name} after training: the model is saved in "
                        f"{targs.output_dir}, the evaluation was not run")
                else:
                    say(f"finetune: stopped by {stop.name} after step {step}: checkpoint-{step} in "
                        f"{targs.output_dir} is complete; continue with --resume-from-checkpoint last")
                if is_main:
                    write_run_record(targs.output_dir, run_id, fingerprint, "complete" if trained else "interrupted")
                return {**metrics, "output_dir": targs.output_dir, "recipe": resolved, "trainer": trainer,
                        "interrupted": stop.name, "exit_code": 128 + int(stop.received)}
        if trainer.skipped_steps:
            say(f"note: {len(trainer.skipped_steps)} steps were skipped for a non-finite loss or gradients: "
                f"{trainer.skipped_steps[:20]}{' ...' if len(trainer.skipped_steps) > 20 else ''}")
        trainer.save_metrics("train", train_result.metrics)
        if is_main:
            card = finetune_model_card(targs.hub_model_id or os.path.basename(os.path.abspath(targs.output_dir)),
                                       args.model, dataset_name or args.dataset, metrics.get("eval"),
                                       recipe_summary=resolved.summary(), num_labels=model.config.num_labels)
            write_text_atomic(os.path.join(targs.output_dir, "README.md"), str(card))  # recipe.json: at the start
            write_run_record(targs.output_dir, run_id, fingerprint, "complete")
            if push:
                repo = targs.hub_model_id or os.path.basename(os.path.abspath(targs.output_dir))
                url = push_folder(targs.output_dir, repo, token=targs.hub_token, private=targs.hub_private_repo,
                                  commit_message="Upload finetuned model", ignore_patterns=PUSH_IGNORE)
                say(f"pushed to {url}")
        if eval_dataset is not None and is_main:
            ev = metrics["eval"]
            say(f"eval on {eval_name}: mean IoU {ev.get('eval_mean_iou', float('nan')):.4f}, pixel accuracy "
                f"{ev.get('eval_overall_accuracy', float('nan')):.4f}")
        say(f"saved to {targs.output_dir}")
        metrics["output_dir"] = targs.output_dir
        metrics["recipe"] = resolved
        metrics["trainer"] = trainer
        return metrics
    finally:
        lock.release()


def main(argv=None, callbacks=None, prog: str | None = None) -> int:
    from .checkpoints import RunError
    from .launch import relaunch_if_single_cpu_process
    from .model_inputs import DatasetCheckError

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--dry-run" in argv or "--dry_run" in argv:  # one process prints the recipe; nothing to launch
        args, targs = parse_args(argv, prog=prog)
        try:
            print(json.dumps(dry_run(args, targs), indent=1))
        except (DatasetCheckError, KeyError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            print(f"{prog or 'finetune'}: error: {message}", file=sys.stderr)
            return 2
        return 0
    status = relaunch_if_single_cpu_process("hf_seg.training.finetune", argv)
    if status is not None:
        return status
    args, targs = parse_args(argv, prog=prog)
    try:
        result = run(args, targs, callbacks=callbacks)
    except (DatasetCheckError, KeyError) as err:
        message = str(err.args[0] if isinstance(err, KeyError) and err.args else err)
        if "Original Traceback" in message:  # raised in a DataLoader worker: its last line is the message
            message = message.rstrip().splitlines()[-1].split("Error: ", 1)[-1]
        print(f"{prog or 'finetune'}: error: {message}", file=sys.stderr)
        return 2
    except RunError as err:
        print(f"{prog or 'finetune'}: error: {err}", file=sys.stderr)
        return 1
    return int(result.get("exit_code", 0))


if __name__ == "__main__":
    sys.exit(main())
