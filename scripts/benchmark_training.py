#!/usr/bin/env python
"""Training throughput of the finetuning path (transformers.Trainer + accelerate) against a plain PyTorch loop.

Both paths train the same model (same initial weights), on the same data (the same TrainDataset: decoding, the
transforms.v2 augmentation, the collator), with the same optimizer groups and lr schedule, in the same process.
Runs alternate (plain, Trainer, plain, Trainer, ...) so load changes on a shared machine hit both; each run's first
``--warmup`` steps are not timed. Images/s = timed steps x images per step / timed seconds.

    python scripts/benchmark_training.py --model csail-ade20k-mobilenetv2dilated-c1-deepsup \\
        --dataset demo_data/camvid --steps 20 --repeats 3

Every finetune flag works (the setup is scripts/finetune.py's); ``--output`` writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import torch


def _split_argv(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of each run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path (alternating)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default=None, help="write the results as JSON")
    return parser.parse_known_args(argv)


def _finetune_argv(rest, total_steps, output_dir):
    defaults = {"--recipe": ["finetune"], "--crop-size": ["160"], "--per-device-train-batch-size": ["8"],
                "--gradient-accumulation-steps": ["1"], "--train-scale": ["240", "180"]}
    argv = list(rest)
    for flag, value in defaults.items():
        if flag not in argv and flag.replace("-", "_").replace("__", "--") not in argv:
            argv += [flag, *value]
    return argv + ["--max-steps", str(total_steps), "--output-dir", output_dir, "--eval-split", "none",
                   "--save-strategy", "no", "--report-to", "none", "--disable-tqdm", "true",
                   "--logging-steps", str(10**9), "--dataloader-num-workers", "0"]


def _clock(warmup):
    """A TrainerCallback timing from the end of step ``warmup`` to the end of the run."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        start = end = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup:
                self.start = time.perf_counter()
            self.end = time.perf_counter()

    return Clock()


def trainer_run(rest, warmup, steps, initial_state):
    from hf_seg.training.finetune import build_trainer, parse_args

    with tempfile.TemporaryDirectory() as tmp:
        args, targs = parse_args(_finetune_argv(rest, warmup + steps, tmp))
        clock = _clock(warmup)
        built = build_trainer(args, targs, callbacks=[clock])
        built["model"].load_state_dict(initial_state)
        built["trainer"].train()
        batch = built["recipe"].per_device_batch_size * built["recipe"].gradient_accumulation_steps
    return steps * batch / (clock.end - clock.start), built


def plain_run(built, warmup, steps, initial_state, seed):
    """The same model/data/optimizer/schedule in a hand-written loop (no Trainer, no accelerate)."""
    from hf_seg.training.model_inputs import EpochKeySampler
    from hf_seg.training.optim import build_optimizer, build_scheduler

    model = built["model"]
    model.load_state_dict(initial_state)
    model.train()
    resolved = built["recipe"]
    dataset = built["train_dataset"]
    loader = torch.utils.data.DataLoader(dataset, batch_size=resolved.per_device_batch_size,
                                         sampler=EpochKeySampler(len(dataset), seed=seed),
                                         collate_fn=built["collator"], num_workers=0, drop_last=False)
    optimizer = build_optimizer(model, resolved)
    scheduler = build_scheduler(optimizer, resolved)
    accumulation = resolved.gradient_accumulation_steps
    step, micro, epoch, start = 0, 0, 0, None
    while step < warmup + steps:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            loss = model(**batch).loss / accumulation
            loss.backward()
            micro += 1
            if micro % accumulation:
                continue
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == warmup:
                start = time.perf_counter()
            if step == warmup + steps:
                break
        epoch += 1
    elapsed = time.perf_counter() - start
    return steps * resolved.per_device_batch_size * accumulation / elapsed


def main(argv=None) -> int:
    bench, rest = _split_argv(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(bench.threads or torch.get_num_threads())
    if "--model" not in rest:
        rest += ["--model", "csail-ade20k-mobilenetv2dilated-c1-deepsup"]
    if "--dataset" not in rest:
        rest += ["--dataset", "demo_data/camvid"]
    seed = 42
    # one setup gives the initial weights and the objects the plain loop reuses
    with tempfile.TemporaryDirectory() as tmp:
        from hf_seg.training.finetune import build_trainer, parse_args

        args, targs = parse_args(_finetune_argv(rest, bench.warmup + bench.steps, tmp))
        seed = targs.data_seed if targs.data_seed is not None else targs.seed
        built = build_trainer(args, targs)
        initial = {k: v.clone() for k, v in built["model"].state_dict().items()}
    results = {"plain": [], "trainer": []}
    for repeat in range(bench.repeats):
        results["plain"].append(plain_run(built, bench.warmup, bench.steps, initial, seed))
        ips, _ = trainer_run(rest, bench.warmup, bench.steps, initial)
        results["trainer"].append(ips)
        print(f"repeat {repeat + 1}/{bench.repeats}: plain {results['plain'][-1]:.2f} img/s, "
              f"Trainer {results['trainer'][-1]:.2f} img/s", flush=True)
    plain, trainer = statistics.median(results["plain"]), statistics.median(results["trainer"])
    pairs = [t / p for p, t in zip(results["plain"], results["trainer"])]
    summary = {
        "model": args.model, "dataset": args.dataset, "threads": torch.get_num_threads(),
        "images_per_step": built["recipe"].per_device_batch_size * built["recipe"].gradient_accumulation_steps,
        "crop_size": built["recipe"].recipe.pipeline.crop_size, "timed_steps": bench.steps, "warmup": bench.warmup,
        "plain_images_per_s": results["plain"], "trainer_images_per_s": results["trainer"],
        "plain_median": plain, "trainer_median": trainer,
        "trainer_overhead_percent": 100 * (plain / trainer - 1),
        "paired_ratio_trainer_over_plain": pairs, "paired_ratio_median": statistics.median(pairs),
    }
    print(f"plain loop: {plain:.2f} img/s, Trainer: {trainer:.2f} img/s (medians of {bench.repeats}); Trainer time "
          f"overhead {summary['trainer_overhead_percent']:+.1f}% (target <= 10%); paired Trainer/plain throughput "
          f"ratio median {summary['paired_ratio_median']:.3f}")
    if bench.output:
        with open(bench.output, "w") as handle:
            json.dump(summary, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
