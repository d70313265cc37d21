"""A minimal model card for a finetuned model (``model-index`` with the measured mean IoU).

The zoo's full cards are :mod:`hf_seg.model_cards`; this card only states what the finetuning run knows.
"""

from __future__ import annotations

import os

__all__ = ["finetune_model_card"]


def finetune_model_card(model_name: str, base_model: str, dataset_name: str, metrics: dict | None,
                        recipe_summary: str = "", num_labels: int | None = None, license: str | None = None):
    """A ``huggingface_hub.ModelCard`` whose ``model-index`` holds the evaluation's mean IoU (and accuracies)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    metrics = metrics or {}
    results = []
    for key, metric_type, metric_name in (("eval_mean_iou", "mean_iou", "mIoU"),
                                          ("eval_mean_accuracy", "mean_accuracy", "mean accuracy"),
                                          ("eval_overall_accuracy", "overall_accuracy", "pixel accuracy")):
        value = metrics.get(key)
        if value is not None and value == value:  # skip NaN
            results.append(EvalResult(task_type="image-segmentation", task_name="Semantic Segmentation",
                                      dataset_type=dataset_name, dataset_name=dataset_name,
                                      metric_type=metric_type, metric_name=metric_name,
                                      metric_value=round(float(value), 4)))
    data = ModelCardData(
        library_name="transformers", pipeline_tag="image-segmentation", license=license,
        tags=["hf_seg", "semantic-segmentation"], datasets=[dataset_name] if dataset_name else None,
        base_model=base_model if base_model and "/" in base_model and not os.path.isdir(base_model) else None,
        model_name=model_name if results else None, eval_results=results or None,
    )
    miou = metrics.get("eval_mean_iou")
    lines = [
        "---", data.to_yaml(), "---", "",
        f"# {model_name}", "",
        f"`{base_model}` finetuned on `{dataset_name}` with `hf_seg`'s `scripts/finetune.py`"
        + (f" ({num_labels} classes)." if num_labels else "."), "",
        "## Evaluation", "",
        (f"mean IoU {miou:.4f} on the evaluation split (whole-image evaluation at the processor's test scale during "
         "training; `scripts/evaluate.py` runs the paper's protocol)." if miou is not None else "Not evaluated."),
        "",
    ]
    if recipe_summary:
        lines += ["## Training", "", "```", recipe_summary, "```", ""]
    lines += ["## Use", "", "```python", "import hf_seg", "from transformers import AutoImageProcessor, "
              "AutoModelForSemanticSegmentation", "", f'model = AutoModelForSemanticSegmentation.from_pretrained("{model_name}")',
              f'processor = AutoImageProcessor.from_pretrained("{model_name}")', "```", ""]
    return ModelCard("\n".join(lines))
