"""Prediction to files: ``hf-seg predict`` over files, folders, globs or a list on stdin; label PNGs, overlays with
a colour legend of the classes present.

    hf-seg predict photos/ --model M --out predictions/ [--overlay] [--batch-size 4] [--num-workers 2]
    find data -name '*.jpg' | hf-seg predict - --model M --out predictions/
    accelerate launch --num_processes 4 -m hf_seg.predict photos/ --model M --out predictions/

Each image is read by the one decoder (:func:`hf_seg.image_io.decode_image`: EXIF orientation, 16-bit, palette, ...)
in ``DataLoader`` workers, preprocessed by the model's processor and run with the model's test protocol (whole or
sliding window; ``--aug-test`` for its multi-scale + flip). Class scores are upsampled to the photo's size in chunks
of classes (:func:`hf_seg.inference.upsample_argmax`), so a 12-megapixel photo and 150 classes need a few hundred MB
instead of 7 GB. Unreadable files are skipped with a message naming them, and the exit status is then 1. Every file
is written to a temporary name and renamed when complete. Under ``accelerate launch`` / ``torchrun`` each process
takes a share of the images.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .image_io import IMAGE_EXTENSIONS, save_image_atomic
from .label_sets import available_label_sets, default_palette, get_label_set, label_set_for

__all__ = ["PredictError", "PredictionWriter", "collect_inputs", "draw_legend", "label_id_table", "label_image",
           "main", "overlay", "palette_for", "predict_files", "prediction_paths", "relative_names", "run", "segment"]


# ------------------------------------------------------------------------------------------------- drawing
def palette_for(config) -> np.ndarray:
    """[num_labels, 3] uint8 colours: the dataset's official palette when the labels are a known dataset's."""
    names = [config.id2label[i] for i in range(config.num_labels)] if config.id2label else []
    label_set = label_set_for(config.num_labels)
    if label_set is not None and list(label_set.names) == names:
        return np.asarray(label_set.palette, dtype=np.uint8)
    return np.asarray(default_palette(config.num_labels), dtype=np.uint8)


def overlay(image, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The image (PIL or uint8 [H, W, 3]) blended with the label colours."""
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    colours = palette[np.clip(labels, 0, len(palette) - 1)]
    blended = (1 - alpha) * rgb + alpha * colours
    return Image.fromarray(blended.round().astype(np.uint8))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except TypeError:  # pragma: no cover - old Pillow: the fixed bitmap font
        return ImageFont.load_default()


def draw_legend(image: Image.Image, labels: np.ndarray, id2label, palette: np.ndarray,
                font_size: int | None = None) -> Image.Image:
    """``image`` with a legend panel on its right: a colour swatch, the class name and its share of the pixels for
    every class present in ``labels``, most pixels first (as many as fit; the rest are counted in a last line).
    Used for ``hf-seg predict`` overlays and the demo's grid."""
    from PIL import ImageDraw

    ids, counts = np.unique(np.asarray(labels), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    ids, counts = ids[order], counts[order]
    total = max(int(counts.sum()), 1)
    size = font_size or int(np.clip(image.height // 28, 10, 28))
    font = _font(size)
    row, pad = int(size * 1.6), max(4, size // 2)
    fit = max(1, (image.height - 2 * pad) // row)
    shown = len(ids) if len(ids) <= fit else fit - 1
    names = id2label or {}
    lines = [f"{names.get(int(i), names.get(str(int(i)), str(int(i))))}  {100 * c / total:.1f}%"
             for i, c in zip(ids[:shown], counts[:shown])]
    if shown < len(ids):
        lines.append(f"+{len(ids) - shown} more classes")
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max(int(measure.textlength(line, font=font)) for line in lines) if lines else 0
    swatch = size
    width = pad + swatch + pad + text_width + pad
    height = max(image.height, 2 * pad + row * len(lines))
    canvas = Image.new("RGB", (image.width + width, height), (255, 255, 255))
    canvas.paste(image.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x0 = image.width + pad
    for k, line in enumerate(lines):
        y = pad + k * row
        if k < shown:
            colour = tuple(int(c) for c in palette[int(ids[k])]) if 0 <= int(ids[k]) < len(palette) else (0, 0, 0)
            draw.rectangle([x0, y, x0 + swatch, y + swatch], fill=colour, outline=(0, 0, 0))
        draw.text((x0 + swatch + pad, y), line, fill=(0, 0, 0), font=font)
    return canvas


def label_image(labels: np.ndarray) -> Image.Image:
    """8-bit PNG when the ids fit, 16-bit otherwise (e.g. COCO-Stuff's 171 classes still fit in 8 bits)."""
    if labels.max(initial=0) < 256:
        return Image.fromarray(labels.astype(np.uint8), mode="L")
    return Image.fromarray(labels.astype(np.uint16))


# ------------------------------------------------------------------------------------------------- ids and names
def label_id_table(info, ids: str = "dataset") -> np.ndarray | None:
    """Class index -> the id the dataset stores for it (the inverse of its label map and label reduction):
    Cityscapes labelIds, ADE20K 1..150, as benchmark servers take them; ``None`` for ``ids="train"``.

    A dataset read from files that already hold class indices (Cityscapes ``*_labelTrainIds.png``) still gets its
    label set's official ids."""
    if ids == "train":
        return None
    if ids != "dataset":
        raise ValueError(f"ids must be 'dataset' or 'train', got {ids!r}")
    label_map, reduce = info.label_map, info.reduce_labels
    if not label_map and info.name in available_label_sets():
        label_set = get_label_set(info.name)
        label_map, reduce = (label_set.label_map or None), label_set.reduce_labels
    table = np.arange(info.num_labels, dtype=np.int64) + (1 if reduce else 0)
    if label_map:
        inverse: dict[int, int] = {}
        for stored, index in sorted(label_map.items()):
            inverse.setdefault(int(index), int(stored))
        for k, value in enumerate(table):
            if int(value) in inverse:
                table[k] = inverse[int(value)]
            elif int(value) in label_map:
                raise ValueError(f"class {k} has no stored id in {info.name}'s label map")
    return table


def relative_names(names, count: int) -> list[str]:
    """Output names (without suffix) for ``count`` images: their paths relative to the folder they share, or
    numbers when the paths are unknown."""
    if names is None:
        return [f"{i:06d}" for i in range(count)]
    paths = [os.path.abspath(str(n)) for n in list(names)[:count]]
    if not paths:
        return []
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    return [os.path.splitext(os.path.relpath(p, root))[0] for p in paths]


def prediction_paths(out_dir, names: list[str], suffix: str = ".png") -> list[Path]:
    """``out_dir / name + suffix`` per image; two images that would write one file are refused."""
    paths = [Path(out_dir) / (name + suffix) for name in names]
    seen: dict[Path, str] = {}
    for path, name in zip(paths, names):
        if path in seen:
            raise PredictError(f"two images would write {path} ({seen[path]!r} and {name!r}); rename one")
        seen[path] = name
    return paths


# ------------------------------------------------------------------------------------------------- writing
class PredictionWriter:
    """Writes label PNGs (and overlays) on background threads, each file atomically, so that encoding PNGs
    overlaps the next forward. At most ``max_pending`` images wait in memory. :meth:`close` waits and raises
    ``OSError`` naming the files that could not be written."""

    def __init__(self, label_paths, overlay_paths=None, id_table: np.ndarray | None = None,
                 palette: np.ndarray | None = None, id2label=None, legend: bool = True, threads: int = 2,
                 max_pending: int = 4):
        self.label_paths = list(label_paths)
        self.overlay_paths = list(overlay_paths) if overlay_paths is not None else None
        self.id_table = id_table
        self.palette = palette
        self.id2label = id2label
        self.legend = legend
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="hf-seg-writer")
        self.slots = threading.BoundedSemaphore(max(1, max_pending))
        self.futures = []
        self.written = self.failed = 0

    def submit(self, indices, labels: np.ndarray, images: np.ndarray | None = None) -> None:
        """``labels`` [B, H, W] class indices of images ``indices``; ``images`` uint8 [B, H, W, 3] for overlays."""
        for k, index in enumerate(indices):
            self.slots.acquire()
            image = images[k] if images is not None else None
            future = self.pool.submit(self._write, int(index), np.asarray(labels[k]), image)
            future.add_done_callback(lambda _: self.slots.release())
            self.futures.append(future)

    def _write(self, index: int, labels: np.ndarray, image) -> int:
        stored = self.id_table[labels] if self.id_table is not None else labels
        save_image_atomic(label_image(stored), self.label_paths[index])
        written = 1
        if self.overlay_paths is not None and self.overlay_paths[index] is not None and image is not None:
            picture = overlay(np.asarray(image), labels, self.palette)
            if self.legend:
                picture = draw_legend(picture, labels, self.id2label, self.palette)
            save_image_atomic(picture, self.overlay_paths[index])
        return written

    def close(self) -> int:
        """Wait for every file; the count written (also in ``.written``). Raises ``OSError`` if any failed."""
        errors = []
        for future in self.futures:
            try:
                self.written += future.result()
            except OSError as err:
                errors.append(str(err))
        self.pool.shutdown(wait=True)
        self.futures = []
        self.failed = len(errors)
        if errors:
            raise OSError(f"{len(errors)} file(s) could not be written; first: {errors[0]}")
        return self.written


# ------------------------------------------------------------------------------------------------- one image
@torch.no_grad()
def segment(image, model, processor, device=None, aug_test: bool = False) -> np.ndarray:
    """Label map [H, W] at the image's own size (a PIL image, a path or an RGB array), with the model's test
    protocol (whole or sliding window) and bounded memory for large photos."""
    from .data.inference_data import make_views
    from .image_io import decode_image
    from .inference import TestProtocol

    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    array = decode_image(image)
    protocol = TestProtocol.resolve(model.config, aug_test=aug_test)
    views = make_views(processor, array, protocol.scales)
    labels = protocol.labels(model, [v.to(device=device, dtype=dtype) for v, _ in views], array.shape[:2],
                             [valid for _, valid in views], exact=False)
    return labels[0].cpu().numpy()


# ------------------------------------------------------------------------------------------------- inputs
def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def collect_inputs(inputs, stdin=None, exclude=None) -> tuple[list[tuple[str, str]], list[str]]:
    """(path, name relative to its input) for every image named by ``inputs`` -- files, folders (searched
    recursively for image files), globs (``**`` allowed) and ``-`` (one path a line on ``stdin``) -- and the
    problems found (arguments that name nothing). Files under ``exclude`` (the output folder) are left out."""
    entries: list[tuple[str, str]] = []
    problems: list[str] = []
    excluded = os.path.abspath(exclude) + os.sep if exclude else None

    def keep(path: Path) -> bool:
        return excluded is None or not os.path.abspath(path).startswith(excluded)

    for arg in inputs:
        arg = str(arg)
        if arg == "-":
            lines = [line.strip() for line in (sys.stdin if stdin is None else stdin) if line.strip()]
            paths = []
            for line in lines:
                if Path(line).is_file():
                    paths.append(Path(line))
                else:
                    problems.append(f"{line}: no such file (listed on stdin)")
            if paths:
                root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
                entries += [(str(p), os.path.relpath(os.path.abspath(p), root)) for p in paths if keep(p)]
        elif glob.has_magic(arg):
            matches = [Path(m) for m in sorted(glob.glob(arg, recursive=True))]
            matches = [m for m in matches if m.is_file() and keep(m)]
            if not matches:
                problems.append(f"{arg}: no file matches")
            prefix = arg[: min(i for i, ch in enumerate(arg) if ch in "*?[")]
            root = prefix if prefix.endswith(os.sep) or not prefix else os.path.dirname(prefix)
            entries += [(str(m), os.path.relpath(str(m), root or ".")) for m in matches]
        elif Path(arg).is_dir():
            files = sorted(p for p in Path(arg).rglob("*") if p.is_file() and _is_image(p) and keep(p))
            if not files:
                problems.append(f"{arg}: no image files in this folder ({', '.join(IMAGE_EXTENSIONS)})")
            entries += [(str(p), str(p.relative_to(arg))) for p in files]
        elif Path(arg).is_file():
            entries.append((arg, Path(arg).name))
        else:
            from .hub_or_path import similar_paths

            close = similar_paths(arg)
            problems.append(f"{arg}: no such file or folder" + (f"; did you mean {', '.join(close)}?" if close else ""))
    return entries, problems


# ------------------------------------------------------------------------------------------------- many images
def predict_files(sources: list[str], label_paths: list[Path], model, processor, processes=None,
                  overlay_paths: list[Path] | None = None, aug_test: bool = False, batch_size: int | None = None,
                  num_workers: int = 0, legend: bool = True, progress: bool = True) -> tuple[int, int]:
    """Predict every image of ``sources`` (this process's share of them) and write its label PNG (and overlay).
    Returns (images written, images skipped) over all processes; skipped files are reported on stderr."""
    from .data.inference_data import InferenceDataset, header_size_of, make_loader, plan_batches
    from .distributed import Processes
    from .inference import TestProtocol

    processes = processes or Processes(device=next(model.parameters()).device)
    device, dtype = processes.device, next(model.parameters()).dtype
    protocol = TestProtocol.resolve(model.config, aug_test=aug_test)
    rows = [{"image": source} for source in sources]
    images_per_batch = batch_size if protocol.mode == "whole" and batch_size else 1
    plan = plan_batches(len(rows), images_per_batch, header_size_of(rows) if images_per_batch > 1 else None)
    mine = processes.shard(plan)
    data = InferenceDataset(rows, processor, protocol.scales, names=sources, keep_image=overlay_paths is not None)
    loader = make_loader(data, mine, num_workers=num_workers, pin_memory=device.type == "cuda")
    palette = palette_for(model.config)
    writer = PredictionWriter(label_paths, overlay_paths, palette=palette,
                              id2label={int(k): v for k, v in (model.config.id2label or {}).items()}, legend=legend)
    bar = None
    if progress and processes.is_main:
        from tqdm.auto import tqdm

        desc = "predicting" + (f" (process 0 of {processes.world_size})" if processes.distributed else "")
        bar = tqdm(total=sum(len(b) for b in mine), desc=desc, unit="img", dynamic_ncols=True)
    skipped = 0
    with torch.no_grad():
        for batch in loader:
            for _, message in batch["errors"]:
                skipped += 1
                print(f"hf-seg predict: skipped {message}", file=sys.stderr, flush=True)
            if "views" in batch:
                views = [v.to(device=device, dtype=dtype, non_blocking=True) for v in batch["views"]]
                labels = protocol.labels(model, views, batch["size"], batch["valid"],
                                         batch_size=batch_size if protocol.mode == "slide" else None, exact=False)
                images = batch["images"].numpy() if "images" in batch else None
                writer.submit(batch["indices"], labels.cpu().numpy(), images)
            if bar is not None:
                bar.update(len(batch["indices"]) + len(batch["errors"]))
    if bar is not None:
        bar.close()
    try:
        writer.close()
    except OSError as err:
        print(f"hf-seg predict: {err}", file=sys.stderr, flush=True)
        skipped += writer.failed
    written = writer.written
    counts = torch.tensor([written, skipped], dtype=torch.float64)
    processes.sum(counts)
    return int(counts[0]), int(counts[1])


# ------------------------------------------------------------------------------------------------- CLI
def _jobs(args, stdin_lines=None) -> tuple[list[str], list[Path], list[Path] | None, list[str]]:
    single_file = (len(args.inputs) == 1 and args.inputs[0] != "-" and Path(args.inputs[0]).is_file()
                   and Path(args.out).suffix.lower() in IMAGE_EXTENSIONS)
    if single_file:  # the one-image form: --out is the overlay
        out = Path(args.out)
        labels = Path(args.labels_out) if args.labels_out else out.with_name(out.stem + "_labels.png")
        return [args.inputs[0]], [labels], [out], []
    if args.labels_out:
        raise PredictError("--labels-out is for the one-image form (one image, --out FILE.png)")
    entries, problems = collect_inputs(args.inputs, stdin=stdin_lines, exclude=args.out)
    names = [os.path.splitext(name)[0] for _, name in entries]
    label_paths = prediction_paths(args.out, names)
    overlay_paths = None
    if args.overlay or args.overlay_dir:
        overlay_paths = prediction_paths(args.overlay_dir or args.out, names, "_overlay.png")
        clash = set(label_paths) & set(overlay_paths)
        if clash:
            raise PredictError(f"a label map and an overlay would both be {sorted(clash)[0]}")
    return [source for source, _ in entries], label_paths, overlay_paths, problems


class PredictError(ValueError):
    """Nothing to segment, or outputs that would collide; the message says which."""


def run(args) -> int:
    """``hf-seg predict`` with parsed arguments (:mod:`hf_seg.predict_args`); returns the exit status."""
    from .distributed import command_argv, default_num_workers, init_processes
    from .training.launch import relaunch_if_single_cpu_process

    status = relaunch_if_single_cpu_process("hf_seg.predict", command_argv("predict"))
    if status is not None:
        return status
    processes = init_processes(args.device)
    stdin_lines = None
    if "-" in args.inputs:  # every process inherits stdin: process 0 reads it and tells the others
        stdin_lines = processes.broadcast(sys.stdin.read().splitlines() if processes.is_main else None)
    sources, label_paths, overlay_paths, problems = _jobs(args, stdin_lines)
    if not sources:
        raise PredictError("no images to segment" + (": " + "; ".join(problems) if problems else ""))
    if processes.is_main:
        for problem in problems:
            print(f"hf-seg predict: {problem}", file=sys.stderr)
    from .zoo import load

    model, processor = load(args.model)
    model = model.to(processes.device).eval()
    if not args.no_fuse:  # the command owns the model: rewrite it for inference (the same on every process)
        from .fusion import example_input, optimize_for_inference

        optimize_for_inference(model, example_input(model))
    num_workers = args.num_workers if args.num_workers is not None else default_num_workers(processes)
    num_workers = min(num_workers, len(sources))
    written, skipped = predict_files(sources, label_paths, model, processor, processes, overlay_paths,
                                     aug_test=args.aug_test, batch_size=args.batch_size, num_workers=num_workers,
                                     legend=not args.no_legend, progress=not args.no_progress)
    failed = skipped + len(problems)
    if processes.is_main:
        if len(label_paths) == 1 and written:
            print("\n".join(f"wrote {p}" for p in [*(overlay_paths or []), *label_paths]))
        else:
            print(f"wrote {written} label map(s) to {args.out}" + (" and their overlays" if overlay_paths else ""))
        if failed:
            print(f"hf-seg predict: {failed} input(s) could not be segmented (see the messages above)",
                  file=sys.stderr)
    return 1 if failed else 0


def main(argv=None, prog: str | None = None) -> int:
    """``python -m hf_seg.predict``: the ``hf-seg predict`` command."""
    from .cli import run_command

    return run_command("predict", list(sys.argv[1:] if argv is None else argv), prog=prog)


if __name__ == "__main__":
    sys.exit(main())
