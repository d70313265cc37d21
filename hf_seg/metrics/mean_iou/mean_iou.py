"""hf_seg's mean IoU as an ``evaluate`` module: ``evaluate.load(hf_seg.metrics.EVALUATE_MODULE_PATH)``.

Same arguments and outputs as the Hub's ``mean_iou`` metric, bit-identical numbers, but computed by ``hf_seg.metrics``:
no download (works with ``HF_HUB_OFFLINE=1``), and in a single process nothing is written to the Arrow cache: each
``add``/``add_batch`` reduces its maps to a small joint histogram right away, so memory does not grow with the number
of images. With ``num_process > 1`` the usual ``evaluate`` cache-and-gather path is used.
"""

import datasets
import evaluate

from hf_seg.metrics import RawPairHistogram, mean_iou, metrics_from_confusion

_DESCRIPTION = """
IoU is the area of overlap between the predicted segmentation and the ground truth divided by the area of their union.
The mean IoU averages the per-class IoU over the classes present in the references or predictions. Also returns the
per-class and mean accuracy (recall) and the overall pixel accuracy. Computed from a confusion matrix by hf_seg.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`List[ndarray]`): predicted maps of shape (height, width); each pair may have its own size.
    references (`List[ndarray]`): ground-truth maps, same sizes as the predictions.
    num_labels (`int`): number of classes.
    ignore_index (`int`): reference value whose pixels are skipped.
    nan_to_num (`int`, *optional*): replace NaN values in every output by this number.
    label_map (`dict`, *optional*): `{old: new}` applied to the references first (chained, in dict order).
    reduce_labels (`bool`, *optional*, defaults to `False`): map reference 0 to 255 and the others to `v - 1`.

Returns:
    mean_iou, mean_accuracy, overall_accuracy (`float`); per_category_iou, per_category_accuracy (`ndarray` of
    shape `(num_labels,)`, NaN for classes absent from both references and predictions).

Examples:
    >>> import numpy as np, evaluate, hf_seg.metrics
    >>> metric = evaluate.load(hf_seg.metrics.EVALUATE_MODULE_PATH)
    >>> metric.compute(predictions=[np.array([[1, 2], [3, 255]])], references=[np.array([[1, 2], [2, 255]])],
    ...                num_labels=4, ignore_index=255)["mean_iou"]
    np.float64(0.5)
"""

_CITATION = """\
@software{MMSegmentation_Contributors_OpenMMLab_Semantic_Segmentation_2020,
author = {{MMSegmentation Contributors}},
license = {Apache-2.0},
month = {7},
title = {{OpenMMLab Semantic Segmentation Toolbox and Benchmark}},
url = {https://github.com/open-mmlab/mmsegmentation},
year = {2020}
}"""

class MeanIoU(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Image(), "references": datasets.Image()}),
            reference_urls=["https://github.com/huggingface/evaluate/tree/main/metrics/mean_iou"],
        )

    # ``evaluate``'s cache-and-gather path (num_process > 1): the maps come back as PIL images
    def _compute(self, predictions, references, num_labels, ignore_index, nan_to_num=None, label_map=None,
                 reduce_labels=False):
        return mean_iou(predictions, references, num_labels=num_labels, ignore_index=ignore_index,
                        nan_to_num=nan_to_num, label_map=label_map, reduce_labels=reduce_labels)

    # ------------------------------------------------------------------ single-process streaming path
    def _streaming(self) -> bool:
        return self.num_process == 1

    def _hist(self) -> RawPairHistogram:
        if getattr(self, "_hf_seg_hist", None) is None:
            self._hf_seg_hist = RawPairHistogram()
        return self._hf_seg_hist

    def _accumulate(self, predictions, references) -> None:
        if predictions is None or references is None:
            raise ValueError("Evaluation module inputs are missing: both predictions and references are required")
        predictions, references = list(predictions), list(references)
        if len(predictions) != len(references):
            raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
        hist = self._hist()
        for pred, ref in zip(predictions, references):
            hist.update(pred, ref)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of (prediction, reference) maps."""
        if not self._streaming():
            return super().add_batch(predictions=predictions, references=references, **kwargs)
        if kwargs:
            raise ValueError(f"Bad inputs for evaluation module: {sorted(kwargs)}. "
                             "All required inputs are ['predictions', 'references']")
        self._accumulate(predictions, references)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one (prediction, reference) pair of maps."""
        if not self._streaming():
            return super().add(prediction=prediction, reference=reference, **kwargs)
        return self.add_batch(predictions=[prediction], references=[reference], **kwargs)

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Mean IoU over everything added so far plus ``predictions``/``references``; resets the state.
        """
        if not self._streaming():
            return super().compute(predictions=predictions, references=references, **kwargs)
        if predictions is not None or references is not None:
            self._accumulate(predictions, references)
        missing = [name for name in ("num_labels", "ignore_index") if name not in kwargs]
        if missing:
            raise TypeError(f"compute() missing required keyword arguments: {missing}")
        unknown = set(kwargs) - {"num_labels", "ignore_index", "nan_to_num", "label_map", "reduce_labels"}
        if unknown:
            raise TypeError(f"compute() got unexpected keyword arguments: {sorted(unknown)}")
        hist, self._hf_seg_hist = self._hist(), None
        confusion = hist.fold(kwargs["num_labels"], kwargs["ignore_index"], kwargs.get("label_map"),
                              kwargs.get("reduce_labels", False))
        return metrics_from_confusion(confusion, kwargs.get("nan_to_num"))
