"""transformers' ``image-segmentation`` pipeline, run with the model's test protocol.

``pipeline("image-segmentation", model=...)`` works for every hf_seg model, but transformers runs it its own way: the
image is read with ``load_image`` (``convert("RGB")``: a 16-bit photo comes out white) and the model runs once on the
whole processed image, even for models whose papers slide a window (SETR, RegionProxy, ...), whose scores then differ
from the reported protocol. :func:`segmentation_pipeline` returns the same pipeline (same call, same output: one
``{"score", "label", "mask"}`` per class present) with hf_seg's reading and inference underneath::

    from hf_seg.pipeline import segmentation_pipeline

    segmenter = segmentation_pipeline("path/to/converted-model")
    segments = segmenter("photo.jpg")          # sliding window when config.test_mode == "slide"
    segments = segmenter("photo.jpg", aug_test=True)   # the model's multi-scale + flip TTA

Equivalently ``pipeline("image-segmentation", model=..., pipeline_class=SegmentationPipeline)``. Images are decoded by
:func:`hf_seg.image_io.decode_image` (EXIF orientation, 16-bit, palette, CMYK), scores upsampled in class chunks
(bounded memory on large photos) -- exactly what ``hf-seg predict`` does.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from transformers.pipelines import ImageSegmentationPipeline

__all__ = ["SegmentationPipeline", "segmentation_pipeline"]


class SegmentationPipeline(ImageSegmentationPipeline):
    """``ImageSegmentationPipeline`` with hf_seg's decoder and test protocol (semantic segmentation only)."""

    def _sanitize_parameters(self, **kwargs):
        aug_test = kwargs.pop("aug_test", None)
        preprocess, forward, postprocess = super()._sanitize_parameters(**kwargs)
        if aug_test is not None:
            preprocess["aug_test"] = bool(aug_test)
        return preprocess, forward, postprocess

    def preprocess(self, image, subtask=None, timeout=None, aug_test: bool = False):
        from .data.inference_data import make_views
        from .image_io import decode_image
        from .inference import TestProtocol

        if subtask not in (None, "semantic"):
            raise ValueError(f"hf_seg models do semantic segmentation only, not {subtask!r}")
        if isinstance(image, str) and image.startswith(("http://", "https://", "data:image/")):
            from transformers.image_utils import load_image

            image = load_image(image, timeout=timeout)  # a download: transformers reads it
        array = decode_image(image)
        protocol = TestProtocol.resolve(self.model.config, aug_test=aug_test)
        views = make_views(self.image_processor, array, protocol.scales)
        return {"views": [v for v, _ in views], "valid": [valid for _, valid in views],
                "target_size": tuple(array.shape[:2]), "protocol": protocol}

    def _forward(self, model_inputs):
        dtype = next(self.model.parameters()).dtype
        views = [v.to(device=self.device, dtype=dtype) for v in model_inputs["views"]]
        protocol = model_inputs["protocol"]
        labels = protocol.labels(self.model, views, model_inputs["target_size"], model_inputs["valid"], exact=False)
        return {"labels": labels[0].cpu()}

    def postprocess(self, model_outputs, subtask=None, threshold=0.9, mask_threshold=0.5,
                    overlap_mask_area_threshold=0.5):
        labels = model_outputs["labels"].numpy()
        id2label = self.model.config.id2label
        return [{"score": None, "label": id2label[int(k)],
                 "mask": Image.fromarray((labels == k).astype(np.uint8) * 255, mode="L")}
                for k in np.unique(labels)]


def segmentation_pipeline(model, **kwargs) -> SegmentationPipeline:
    """``transformers.pipeline("image-segmentation", model=model, pipeline_class=SegmentationPipeline, **kwargs)``."""
    from transformers import pipeline

    return pipeline("image-segmentation", model=model, pipeline_class=SegmentationPipeline, **kwargs)
