"""Finetune any hf_seg model on a segmentation dataset with ``transformers.Trainer`` (``accelerate`` underneath).

    accelerate launch scripts/finetune.py --model setr-pup-ade20k-512 --dataset ADEChallengeData2016 \\
        --output-dir runs/setr --recipe original
    accelerate launch --num_processes 2 --cpu scripts/finetune.py --model DIR --dataset data/camvid --max-steps 20

``--model``: a zoo preset (its architecture, random weights), a converted/pretrained folder or a hub id.
``--dataset``: a dataset folder (ADE20K, Cityscapes, Pascal-Context, COCO-Stuff, CamVid layouts) or a hub dataset
with image + annotation columns, read by :mod:`hf_seg.data`. ``--recipe original`` (default) is the seed's schedule for
the model (see :mod:`hf_seg.training.recipes`), scaled to the number of processes; ``--recipe NAME`` picks a named
recipe. Every ``TrainingArguments`` flag passes through (``--output-dir``, ``--max-steps``, ``--save-steps``,
``--resume-from-checkpoint``, ``--seed``, ``--bf16``, ``--gradient-checkpointing``, ``--push-to-hub`` ...); explicit
batch size / accumulation / learning rate flags override the recipe's.
"""

from __future__ import annotations

import json
import os
import sys

from .arguments import FinetuneArguments, parse_args
from .build import build_trainer, family_of

__all__ = ["FinetuneArguments", "parse_args", "build_trainer", "run", "main", "family_of"]


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
        card.save(os.path.join(targs.output_dir, "README.md"))
        with open(os.path.join(targs.output_dir, "recipe.json"), "w") as handle:
            json.dump({"recipe": resolved.recipe.to_dict(), "per_device_batch_size": resolved.per_device_batch_size,
                       "gradient_accumulation_steps": resolved.gradient_accumulation_steps,
                       "max_steps": resolved.max_steps, "lr": resolved.lr, "num_processes": resolved.num_processes,
                       "scaling": resolved.scaling}, handle, indent=1, default=str)
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
