"""BatchNorm during finetuning: the recipe's running-average rule, freezing, and what the run normalises over.

A recipe may ask for another running-average momentum than PyTorch's 0.1 and for a bias-corrected running average
(as one original's synchronised BatchNorm keeps it): with ``m`` the momentum it keeps ``t <- (1-m) t + x``,
``n <- (1-m) n + 1`` (``n`` starts at 1) and sets ``running = t / n``. That is an exponential average whose momentum
at the k-th update is ``m / (1 - (1-m)^(k+1))``, so a forward pre-hook sets exactly that momentum on PyTorch's
BatchNorm; ``k`` counts the module's updates since the hook was installed (``num_batches_tracked``, which checkpoints
keep, so a resumed run continues the same sequence).
"""

from __future__ import annotations

from torch import nn

__all__ = ["apply_batchnorm_recipe", "freeze_batchnorm", "batchnorm_modules", "bias_corrected_momentum"]


def batchnorm_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bias_corrected_momentum(momentum: float, update: int) -> float:
    """The momentum of the ``update``-th update (1-based) of the bias-corrected running average."""
    return momentum / (1.0 - (1.0 - momentum) ** (update + 1))


def _bias_correct(module, _inputs):
    if module.training and module.track_running_stats:
        update = int(module.num_batches_tracked) - module._hf_seg_bn_start + 1  # this forward's update
        module.momentum = bias_corrected_momentum(module._hf_seg_bn_momentum, update)


def apply_batchnorm_recipe(model: nn.Module, momentum: float | None, bias_corrected: bool = False) -> int:
    """Set every BatchNorm's running-average momentum (and the bias correction); returns how many were changed."""
    modules = batchnorm_modules(model) if momentum is not None else []
    for module in modules:
        module.momentum = momentum
        if bias_corrected:
            module._hf_seg_bn_momentum = momentum
            module._hf_seg_bn_start = int(module.num_batches_tracked) if module.num_batches_tracked is not None else 0
            module.register_forward_pre_hook(_bias_correct)
    return len(modules)


def _keep_eval(module, _inputs):
    module.training = False  # Trainer calls model.train() every step; frozen norms stay in inference mode


def freeze_batchnorm(model: nn.Module) -> int:
    """BatchNorm layers use their running statistics and do not train their affine parameters."""
    modules = batchnorm_modules(model)
    for module in modules:
        module.eval()
        module.register_forward_pre_hook(_keep_eval)
        for param in module.parameters(recurse=False):
            param.requires_grad_(False)
    return len(modules)
