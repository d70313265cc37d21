"""The model contract every family implements, written once: the ``PreTrainedModel`` base, initialisation helpers,
gradient checkpointing of repeated layers, and recording attention probabilities.

Output contract (every family): ``forward(pixel_values, labels=None, output_hidden_states=None,
output_attentions=None, return_dict=None)`` returns a ``SemanticSegmenterOutput`` subclass whose fields are
``loss, logits, hidden_states, attentions`` followed by the family's extras; ``return_dict=False`` returns
``output.to_tuple()``, i.e. those fields in that order with the ``None`` ones left out (transformers' convention), so
``loss`` and ``logits`` lead in every family. ``hidden_states`` has the embedding (stem) output followed by the output
of every layer (ViT: token sequences ``[B, N, C]``; hierarchical and convolutional backbones: one map ``[B, C, h, w]``
per stage), each a tensor the model went on to use (so it is on the autograd graph). ``attentions`` holds the
probabilities of every attention op in execution order; a model without attention raises instead of returning None.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from transformers import PreTrainedModel
from transformers import initialization as init

from .layers import AttentionProbs


class HfSegPreTrainedModel(PreTrainedModel):
    """Base of every family's ``PreTrainedModel``."""

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    # forward takes **kwargs but averages its loss itself: without this, transformers' Trainer would treat it as a
    # token-count-normalised loss and scale the loss (and gradients) by the number of processes
    accepts_loss_kwargs = False
    supports_gradient_checkpointing = True
    # attention runs through F.scaled_dot_product_attention ("sdpa", the default) or, with attn_implementation="eager"
    # or output_attentions=True, computes its probabilities explicitly; families without attention set False
    _supports_sdpa = True

    def _initialize_weights(self, module, is_custom_code: bool = False):
        # ``_init_weights`` of every family only uses ``transformers.initialization``, which leaves loaded tensors
        # alone, so transformers' shortcut for custom code (skip a module whose own tensors are all loaded) is not
        # needed; without it a module may set up tensors of its children (a projection inside a timm module) and
        # every loading path initialises exactly the same way, whether transformers treats the code as custom or not
        super()._initialize_weights(module, is_custom_code=False)

    def post_init(self):
        super().post_init()
        self._apply_attn_implementation()

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        # transformers guesses from the module source (an ``*Attention(nn.Module)`` class without its attention
        # interface means "no"); ours switch through ``fused_attn`` on every attention site
        return cls._supports_sdpa

    def set_attn_implementation(self, attn_implementation, *args, **kwargs):
        super().set_attn_implementation(attn_implementation, *args, **kwargs)
        self._apply_attn_implementation()

    def _attention_sites(self) -> list[nn.Module]:
        return [m for m in self.modules() if hasattr(m, "fused_attn")]

    def _apply_attn_implementation(self) -> None:
        """``attn_implementation="eager"`` computes attention probabilities explicitly, anything else runs SDPA."""
        fused = getattr(self.config, "_attn_implementation", None) != "eager"
        for module in self._attention_sites():
            module.fused_attn = fused

    def _output_flags(self, output_hidden_states, output_attentions, return_dict) -> tuple[bool, bool, bool]:
        config = self.config
        hidden = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        attentions = config.output_attentions if output_attentions is None else output_attentions
        as_dict = config.return_dict if return_dict is None else return_dict
        return bool(hidden), bool(attentions), bool(as_dict)

    @contextmanager
    def attention_recorder(self, record: bool):
        """With ``record``, the yielded list collects every attention probability tensor of the block, in execution
        order (the sites compute them explicitly for the block's duration); without, nothing changes.

        Attention sites are modules with timm's ``fused_attn`` switch (timm's ``Attention`` / ``WindowAttention``,
        :class:`hf_seg.layers.Attend`), whose probabilities pass through their ``attn_drop`` when the switch is off,
        and :class:`hf_seg.layers.AttentionProbs` markers (e.g. deformable attention's sampling weights).
        """
        if not record:
            yield None
            return
        sites = self._attention_sites()
        taps = [m.attn_drop for m in sites if isinstance(getattr(m, "attn_drop", None), nn.Module)]
        taps += [m for m in self.modules() if isinstance(m, AttentionProbs)]
        if not taps:
            raise ValueError(f"{type(self).__name__} has no attention layers, so output_attentions=True has no "
                             "attention maps to return")
        switched = [(m, m.fused_attn) for m in sites]
        probs: list[torch.Tensor] = []
        handles = []
        try:
            for module, _ in switched:
                module.fused_attn = False
            handles = [tap.register_forward_hook(lambda _m, inputs, _out: probs.append(inputs[0])) for tap in taps]
            yield probs
        finally:
            for handle in handles:
                handle.remove()
            for module, fused in switched:
                module.fused_attn = fused


# ---------------------------------------------------------------------------------------- gradient checkpointing
def enable_checkpointing(module: nn.Module) -> None:
    """Declare ``module`` a runner of repeated layers: transformers' ``gradient_checkpointing_enable`` sets its
    ``gradient_checkpointing`` flag and checkpoint function, and :func:`checkpointed` then uses them."""
    module.gradient_checkpointing = False


def checkpointed(owner: nn.Module, layer, *args):
    """``layer(*args)``, recomputed in the backward pass when gradient checkpointing is on for ``owner`` (training,
    with gradients). BatchNorm running statistics are updated once, by the forward pass, not again by the recompute.
    """
    if getattr(owner, "gradient_checkpointing", False) and owner.training and torch.is_grad_enabled():
        return owner._gradient_checkpointing_func(_OneStatisticsUpdate(layer), *args)
    return layer(*args)


class _OneStatisticsUpdate:
    """Calls ``layer``; from the second call on (the backward recompute) its BatchNorm layers run with momentum 0, which
    leaves the running statistics as they are (an update by factor 0; restoring them afterwards instead would change
    tensors the recomputed graph still needs), and their batch counters are put back. A checkpointed step thus leaves
    the same statistics as a plain one."""

    def __init__(self, layer):
        self.layer, self.calls = layer, 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls == 1 or not isinstance(self.layer, nn.Module):
            return self.layer(*args)
        norms = [m for m in self.layer.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
        saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
        for m in norms:
            m.momentum = 0.0
        try:
            return self.layer(*args)
        finally:
            with torch.no_grad():
                for m, (momentum, count) in zip(norms, saved):
                    m.momentum = momentum
                    m.num_batches_tracked.copy_(count)


# ---------------------------------------------------------------------------------------------- initialisation
def init_norm(module: nn.Module, weight: float = 1.0, bias: float = 0.0) -> None:
    """Affine parameters of a LayerNorm / GroupNorm / BatchNorm, and a BatchNorm's running statistics (mean 0,
    variance 1, no batches seen)."""
    if getattr(module, "weight", None) is not None:
        init.constant_(module.weight, weight)
    if getattr(module, "bias", None) is not None:
        init.constant_(module.bias, bias)
    if isinstance(module, _BatchNorm) and module.track_running_stats:
        init.zeros_(module.running_mean)
        init.ones_(module.running_var)
        init.zeros_(module.num_batches_tracked)


def init_torch_default(module: nn.Module) -> None:
    """PyTorch's own default initialisation of a Linear / Conv layer (``reset_parameters``), through
    ``transformers.initialization``: Kaiming-uniform weight (a=sqrt(5)), bias uniform in ±1/sqrt(fan_in)."""
    init.kaiming_uniform_(module.weight, a=math.sqrt(5))
    if module.bias is not None:
        fan_in = module.weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(module.bias, -bound, bound)
