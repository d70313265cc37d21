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

from .arguments import FinetuneArguments, parse_args
from .build import build_trainer, dry_run, family_of

__all__ = ["FinetuneArguments", "parse_args", "build_trainer", "dry_run", "run", "main", "family_of"]


def run(args, targs, callbacks=None) -> dict:
    """Load, check, train, evaluate and save; returns the metrics and where everything is."""
    from transformers.trainer_utils import get_last_checkpoint

    from .model_inputs import DatasetCheckError
    from .hub import finetune_model_card, push_folder

    built = build_trainer(args, targs, callbacks)
    trainer, model, resolved = built["trainer"], built["model"], built["recipe"]
    eval_dataset, eval_name, say, is_main = built["eval_dataset"], built["eval_name"], built["say"], built["is_main"]
    dataset_name, push = built["dataset_name"], built["push"]

    resume = targs.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last", "latest"):
        resume = get_last_checkpoint(targs.output_dir)
        if resume is None:
            raise DatasetCheckError(f"--resume-from-checkpoint {targs.resume_from_checkpoint}: no checkpoint in "
                                    f"{targs.output_dir}")
    elif isinstance(resume, str) and resume.lower() in ("false", "none", ""):
        resume = None
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.save_state()
    metrics = {"train": train_result.metrics}
    if eval_dataset is not None:
        metrics["eval"] = trainer.evaluate()
        trainer.save_metrics("eval", metrics["eval"])
    trainer.save_metrics("train", train_result.metrics)
    if is_main:
        card = finetune_model_card(targs.hub_model_id or os.path.basename(os.path.abspath(targs.output_dir)),
                                   args.model, dataset_name or args.dataset, metrics.get("eval"),
                                   recipe_summary=resolved.summary(), num_labels=model.config.num_labels)
        card.save(os.path.join(targs.output_dir, "README.md"))  # recipe.json was written when training started
        if push:
            repo = targs.hub_model_id or os.path.basename(os.path.abspath(targs.output_dir))
            url = push_folder(targs.output_dir, repo, token=targs.hub_token, private=targs.hub_private_repo)
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


def main(argv=None, callbacks=None, prog: str | None = None) -> int:
    from .model_inputs import DatasetCheckError
    from .launch import relaunch_if_single_cpu_process

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
        run(args, targs, callbacks=callbacks)
    except (DatasetCheckError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{prog or 'finetune'}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
