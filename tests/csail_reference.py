"""Builds the original CSAIL models live from PyPI's ``mit-semseg`` (the repository's own code) for parity tests.

Weights are seeded random but non-trivial: conv weights with a fan-in scaled std, biases and BN affine parameters
in ranges away from 0/1, and BN running statistics measured on the test input and then perturbed, so activations
stay well scaled through 100+ layers. The checkpoint is written the way the original train.py does.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

import torch
from torch import nn

mit_semseg = None
try:  # the original code is an optional test dependency (pip install --no-deps mit-semseg)
    import mit_semseg  # noqa: F811
    from mit_semseg.models import ModelBuilder, SegmentationModule
except ImportError:  # pragma: no cover
    ModelBuilder = SegmentationModule = None

from hf_seg.modeling.csail.original import build_original  # the original modules, incl. ResnetDilated(16)


def _is_bn(module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


@torch.no_grad()
def randomize(model: nn.Module, sample: torch.Tensor, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)

    def uniform(shape, low, high):
        return torch.rand(shape, generator=generator) * (high - low) + low

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / fan_in**0.5)
            if module.bias is not None:
                module.bias.copy_(uniform(module.bias.shape, -0.1, 0.1))
        elif _is_bn(module):
            module.weight.copy_(uniform(module.weight.shape, 0.7, 1.3))
            module.bias.copy_(uniform(module.bias.shape, -0.2, 0.2))
    # running statistics: measure what each BN sees on the sample (in order), then perturb
    bns = [m for m in model.modules() if _is_bn(m)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = 1.0  # one batch replaces the statistics with that batch's
    model.train()
    model(sample)
    for bn in bns:
        bn.running_mean.add_(uniform(bn.running_mean.shape, -0.05, 0.05))
        bn.running_var.mul_(uniform(bn.running_var.shape, 0.9, 1.1))
        bn.momentum = 0.1
        if hasattr(bn, "_tmp_running_mean"):  # SynchronizedBatchNorm2d: keep its invariant like a trained checkpoint
            bn._running_iter.fill_(300)
            bn._tmp_running_mean.copy_(bn.running_mean * 300)
            bn._tmp_running_var.copy_(bn.running_var * 300)
    model.eval()


class Reference:
    """One original encoder/decoder pair, its checkpoint files and config in a temporary folder.

    ``config_names`` are the architecture names the config states (default: ``encoder``/``decoder``), e.g. the
    argparse-era ``("resnet50_dilated16", "ppm_bilinear_deepsup")``; ``config_style`` is ``"yacs"`` (the
    repository's config files) or ``"argparse"`` (train.py's arguments as a flat mapping, the 2018 code).
    """

    def __init__(self, encoder: str, decoder: str, fc_dim: int, num_class: int = 150, seed: int = 0,
                 input_hw=(64, 64), deep_sup_scale: float = 0.4, config_names=None, config_style: str = "yacs"):
        if ModelBuilder is None:
            raise RuntimeError("mit-semseg is not installed")
        torch.manual_seed(seed)
        self.dir = Path(tempfile.mkdtemp(prefix="csail_ref_"))
        # the checkpoints of a full-size pair are hundreds of MB: removed with the object (or at exit), never left
        weakref.finalize(self, shutil.rmtree, self.dir, True)
        empty = self.dir / "empty.pth"
        torch.save({}, empty)  # a weights file stops ModelBuilder from downloading ImageNet weights
        self.encoder, self.decoder = build_original(encoder, decoder, fc_dim, num_class, empty)
        self.module = SegmentationModule(self.encoder, self.decoder, nn.NLLLoss(ignore_index=-1),
                                         deep_sup_scale if decoder.endswith("deepsup") else None)
        generator = torch.Generator().manual_seed(seed + 1)
        self.pixel_values = torch.randn(1, 3, *input_hw, generator=generator)
        # BN statistics are measured on two images: PPM's 1x1 pooled maps have no variance over one
        self._stats_sample = torch.cat([self.pixel_values, torch.randn(1, 3, *input_hw, generator=generator)])
        randomize(nn.Sequential(self.encoder), self._stats_sample, seed)
        # the decoder's BN statistics come from a forward of the whole module
        self._randomize_decoder(seed)
        self.module.eval()
        torch.save(self.encoder.state_dict(), self.dir / "encoder_epoch_20.pth")
        torch.save(self.decoder.state_dict(), self.dir / "decoder_epoch_20.pth")
        arch_encoder, arch_decoder = config_names or (encoder, decoder)
        self.config_path = self.dir / f"ade20k-{arch_encoder}-{arch_decoder}.yaml"
        if config_style == "yacs":
            text = ("DATASET:\n  root_dataset: ./data/\n  num_class: %d\n  imgSizes: (300, 375, 450, 525, 600)\n"
                    "  imgMaxSize: 1000\n  padding_constant: 8\n  segm_downsampling_rate: 8\n"
                    "MODEL:\n  arch_encoder: %s\n  arch_decoder: %s\n  fc_dim: %d\n"
                    "TRAIN:\n  deep_sup_scale: %s\n" % (num_class, arch_encoder, arch_decoder, fc_dim, deep_sup_scale))
        elif config_style == "argparse":  # train.py's arguments of 2018 (vars(args)), as a flat mapping
            text = ("arch_encoder: %s\narch_decoder: %s\nfc_dim: %d\nnum_class: %d\ndeep_sup_scale: %s\n"
                    "imgSize: [300, 375, 450, 525, 600]\nimgMaxSize: 1000\npadding_constant: 8\n"
                    "segm_downsampling_rate: 8\nroot_dataset: ./data/\n"
                    % (arch_encoder, arch_decoder, fc_dim, num_class, deep_sup_scale))
        else:
            raise ValueError(f"config_style {config_style!r}")
        self.config_path.write_text(text)
        self.num_class = num_class

    @torch.no_grad()
    def _randomize_decoder(self, seed):
        features = self.encoder(self._stats_sample, return_feature_maps=True)
        wrapper = _DecoderOnFeatures(self.decoder, features)
        randomize(wrapper, self._stats_sample, seed + 2)

    @property
    def checkpoints(self):
        return [self.dir / "encoder_epoch_20.pth", self.dir / "decoder_epoch_20.pth"]

    @torch.no_grad()
    def logits(self) -> torch.Tensor:
        """The decoder's last classifier conv output (captured with a hook: the original never returns it)."""
        captured = {}
        last = self.decoder.conv_last[-1] if isinstance(self.decoder.conv_last, nn.Sequential) else self.decoder.conv_last
        handle = last.register_forward_hook(lambda m, i, o: captured.setdefault("logits", o))
        self.decoder.use_softmax = False
        try:
            self.decoder(self.encoder(self.pixel_values, return_feature_maps=True))
        finally:
            handle.remove()
        return captured["logits"]

    @torch.no_grad()
    def loss(self, labels: torch.Tensor) -> torch.Tensor:
        """Training loss as train.py computes it; ``labels`` at the decoder's resolution, -1 = ignore."""
        self.decoder.use_softmax = False
        loss, _ = self.module({"img_data": self.pixel_values, "seg_label": labels})
        return loss

    @torch.no_grad()
    def probabilities(self, size) -> torch.Tensor:
        """What test.py computes for one scale: probabilities at ``size``."""
        self.decoder.use_softmax = True
        try:
            return self.module({"img_data": self.pixel_values}, segSize=size)
        finally:
            self.decoder.use_softmax = False


class _DecoderOnFeatures(nn.Module):
    def __init__(self, decoder, features):
        super().__init__()
        self.decoder = decoder
        self.features = features

    def forward(self, _):
        self.decoder.use_softmax = False
        return self.decoder([f.clone() for f in self.features])


def available() -> bool:
    return ModelBuilder is not None and os.environ.get("HF_SEG_SKIP_LIVE_REFERENCE") != "1"
