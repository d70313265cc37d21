"""Single-image prediction to files: a coloured overlay (the dataset's palette) and the label PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .label_sets import default_palette, label_set_for


def palette_for(config) -> np.ndarray:
    """[num_labels, 3] uint8 colours: the dataset's official palette when the labels are a known dataset's."""
    names = [config.id2label[i] for i in range(config.num_labels)] if config.id2label else []
    label_set = label_set_for(config.num_labels)
    if label_set is not None and list(label_set.names) == names:
        return np.asarray(label_set.palette, dtype=np.uint8)
    return np.asarray(default_palette(config.num_labels), dtype=np.uint8)


@torch.no_grad()
def segment(image: Image.Image, model, processor, device: str = "cpu") -> np.ndarray:
    """Label map [H, W] at the image's own size, with the model's test protocol (whole or sliding window)."""
    from .inference import predict

    inputs = processor(image, return_tensors="pt")
    logits = predict(model, inputs["pixel_values"].to(device), output_size=(image.height, image.width))
    return logits[0].argmax(dim=0).cpu().numpy()


def overlay(image: Image.Image, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> Image.Image:
    colours = palette[labels]
    blended = (1 - alpha) * np.asarray(image.convert("RGB"), dtype=np.float32) + alpha * colours
    return Image.fromarray(blended.round().astype(np.uint8))


def label_image(labels: np.ndarray) -> Image.Image:
    """8-bit PNG when the ids fit, 16-bit otherwise (e.g. COCO-Stuff's 171 classes still fit in 8 bits)."""
    if labels.max(initial=0) < 256:
        return Image.fromarray(labels.astype(np.uint8), mode="L")
    return Image.fromarray(labels.astype(np.uint16))


def predict_to_files(image_path, model_name_or_path, out_path, label_path=None, device="cpu") -> list[Path]:
    from .zoo import load

    model, processor = load(model_name_or_path)
    model = model.to(device).eval()
    image = Image.open(image_path)
    image.load()
    labels = segment(image.convert("RGB"), model, processor, device)
    out_path = Path(out_path)
    label_path = Path(label_path) if label_path else out_path.with_name(out_path.stem + "_labels.png")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    overlay(image, labels, palette_for(model.config)).save(out_path)
    label_image(labels).save(label_path)
    return [out_path, label_path]
