"""``hf-seg demo``: finetune a compact zoo model on the bundled CamVid samples, evaluate it on held-out images and
draw its predictions, in about ten minutes on two CPU cores.

What it runs is what users run: ``scripts/finetune.py``'s code (``hf_seg.training.finetune``: ``Trainer`` with
``accelerate`` underneath, the transforms.v2 pipeline, streaming mean IoU) on the 60 training images, validating on
the 20 validation images, then ``scripts/evaluate.py``'s code (``hf_seg.evaluation``) on the 10 test images at their
original size. The model (CSAIL MobileNetV2-dilated + C1 deep supervision) starts from RANDOM weights: nothing is
downloaded, so the numbers are those of a from-scratch model trained for minutes on 60 images, not the paper's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_MODEL = "csail-ade20k-mobilenetv2dilated-c1-deepsup"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / "demo_data" / "camvid"

__all__ = ["main", "run", "build_parser", "finetune_argv"]


def build_parser(prog: str = "hf-seg demo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="CamVid folder (SegNet layout: train/, trainannot/, "
                                                                  "val/, valannot/, test/, testannot/)")
    parser.add_argument("--output-dir", default="demo_output", help="where the model, metrics and pictures go")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="zoo preset to finetune (random initial weights)")
    parser.add_argument("--minutes", type=float, default=8.0,
                        help="training budget in minutes (the lr schedule is fitted into it)")
    parser.add_argument("--max-steps", type=int, default=2000, help="upper bound on optimizer steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=160, help="square training crop")
    parser.add_argument("--short-side", type=int, default=180,
                        help="images are used at about this short side (CamVid's is 360): training rescales "
                             "around it, evaluation resizes to it")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    return parser


def finetune_argv(args, model_dir: Path) -> list[str]:
    """The scripts/finetune.py command line the demo runs (printed, so it can be rerun by hand)."""
    short = args.short_side
    long = round(short * 4 / 3)  # CamVid is 4:3
    return [
        "--model", args.model, "--dataset", args.data, "--output-dir", str(model_dir),
        "--recipe", "finetune", "--learning-rate", str(args.learning_rate),
        "--max-steps", str(args.max_steps), "--max-train-minutes", str(args.minutes),
        "--per-device-train-batch-size", str(args.batch_size), "--gradient-accumulation-steps", "1",
        "--crop-size", str(args.crop_size), "--train-scale", str(long), str(short), "--ratio-range", "0.5", "2.0",
        "--processor-kwargs", json.dumps({"short_side": short, "max_size": long}),
        "--eval-split", "validation", "--eval-strategy", "no", "--save-strategy", "no",
        "--logging-steps", "10", "--report-to", "none", "--seed", str(args.seed),
        "--dataloader-num-workers", "0",
    ]


def _colour(labels, palette, ignore_index: int):
    import numpy as np

    out = np.zeros((*labels.shape, 3), dtype=np.uint8)
    valid = (labels >= 0) & (labels < len(palette)) & (labels != ignore_index)
    out[valid] = palette[labels[valid]]
    return out


def draw(model, processor, dataset, info, out_dir: Path, max_rows: int = 10) -> tuple[list[Path], Path]:
    """Per-image prediction overlays and one grid PNG (image | ground truth | prediction, one row per image)."""
    import numpy as np
    from PIL import Image, ImageDraw

    from .predict import overlay, palette_for, segment

    palette = palette_for(model.config)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlays, rows = [], []
    for index in range(min(len(dataset), max_rows)):
        row = dataset[index]
        image = row["image"].convert("RGB")
        truth = info.convert_labels(np.array(row["annotation"]))
        prediction = segment(image, model, processor)
        name = Path(row.get("image_path") or f"image_{index:03d}").stem
        path = out_dir / f"{name}_overlay.png"
        overlay(image, prediction, palette).save(path)
        overlays.append(path)
        rows.append([image, Image.fromarray(_colour(truth, palette, info.ignore_index)),
                     Image.fromarray(_colour(prediction, palette, info.ignore_index))])
    width, height = rows[0][0].size
    scale = min(1.0, 320 / width)
    cell = (int(width * scale), int(height * scale))
    header = 18
    grid = Image.new("RGB", (3 * cell[0], header + len(rows) * cell[1]), "white")
    pen = ImageDraw.Draw(grid)
    for col, title in enumerate(("image", "ground truth", "prediction")):
        pen.text((col * cell[0] + 4, 3), title, fill="black")
    for r, cells in enumerate(rows):
        for c, picture in enumerate(cells):
            resample = Image.BILINEAR if c == 0 else Image.NEAREST
            grid.paste(picture.resize(cell, resample), (c * cell[0], header + r * cell[1]))
    grid_path = out_dir / "grid.png"
    grid.save(grid_path)
    return overlays, grid_path


def _default_threads() -> int:
    """All cores, unless other processes already keep them busy: then one thread (several OpenMP threads on
    oversubscribed cores spin against each other and run many times slower than one)."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    return cores if load < cores - 0.5 else max(1, min(cores, int(cores - load + 1)))


def _peak_rss_mib() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


def run(args) -> int:
    start = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads or _default_threads())
    data = Path(args.data)
    if not (data / "train").is_dir() or not (data / "trainannot").is_dir():
        print(f"hf-seg demo: no CamVid data in {data} (expected train/ + trainannot/ ...); pass --data",
              file=sys.stderr)
        return 2
    out = Path(args.output_dir)
    model_dir = out / "model"
    print(f"hf-seg demo: finetuning {args.model} from RANDOM initial weights (no pretrained weights are downloaded) "
          f"on the CamVid samples in {data}, {torch.get_num_threads()} CPU threads, training budget "
          f"{args.minutes:g} min", flush=True)

    from .training.finetune import main as finetune_main

    command = finetune_argv(args, model_dir)
    print("running: scripts/finetune.py " + " ".join(command), flush=True)
    t0 = time.perf_counter()
    status = finetune_main(command)
    train_s = time.perf_counter() - t0
    if status != 0:
        return status

    from .data import load_segmentation_dataset
    from .evaluation import evaluate_segmentation, format_report, load_model_and_processor

    t0 = time.perf_counter()
    model, processor, _ = load_model_and_processor(str(model_dir))
    test = load_segmentation_dataset(str(data), split="test")
    split = next(iter(test))
    result = evaluate_segmentation(model, processor, test[split], test.info, progress=True)
    print(format_report(result, per_class=True))
    eval_s = time.perf_counter() - t0
    overlays, grid = draw(model, processor, test[split], test.info, out / "predictions")

    state = json.loads((model_dir / "trainer_state.json").read_text()) if (model_dir / "trainer_state.json").exists() \
        else {}
    val = json.loads((model_dir / "eval_results.json").read_text()) if (model_dir / "eval_results.json").exists() \
        else {}
    summary = {
        "model": args.model, "initial_weights": "random", "data": str(data),
        "train_images": 60, "optimizer_steps": state.get("global_step"),
        "validation_mean_iou": val.get("eval_mean_iou"),
        "test_mean_iou": result.metrics["mean_iou"], "test_mean_accuracy": result.metrics["mean_accuracy"],
        "test_pixel_accuracy": result.metrics["overall_accuracy"], "test_images": result.num_images,
        "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
        "total_seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": round(_peak_rss_mib(), 1),
        "threads": torch.get_num_threads(), "finetune_command": "scripts/finetune.py " + " ".join(command),
    }
    (out / "demo_results.json").write_text(json.dumps(summary, indent=1) + "\n")
    print()
    print(f"held-out test mIoU {100 * summary['test_mean_iou']:.2f} (pixel accuracy "
          f"{100 * summary['test_pixel_accuracy']:.2f}) on {summary['test_images']} CamVid test images, after "
          f"{summary['optimizer_steps']} steps from random weights on 60 training images; validation mIoU "
          f"{100 * (summary['validation_mean_iou'] or float('nan')):.2f}")
    print(f"time: {summary['total_seconds']:.0f} s in all ({summary['train_seconds']:.0f} s finetuning, "
          f"{summary['eval_seconds']:.0f} s evaluating), peak memory {summary['peak_rss_mib']:.0f} MiB")
    print(f"model:       {model_dir}")
    print(f"overlays:    {out / 'predictions'} ({len(overlays)} *_overlay.png)")
    print(f"grid:        {grid}  (image | ground truth | prediction)")
    print(f"metrics:     {out / 'demo_results.json'}, {model_dir / 'eval_results.json'} (validation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
