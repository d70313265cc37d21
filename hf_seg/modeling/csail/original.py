"""The original CSAIL code (``mit_semseg``) as the parity reference of a release: the family's ``original_logits``."""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from ...conversion import ConversionError, load_checkpoint_file
from .convert_csail import encoder_decoder_paths, original_fields

# SynchronizedBatchNorm bookkeeping and BN counters: present in one of (checkpoint, module) only, never used
_BENIGN = re.compile(r".*(num_batches_tracked|_tmp_running_mean|_tmp_running_var|_running_iter)$")


def _load(module: torch.nn.Module, path: Path, what: str) -> None:
    missing, unexpected = module.load_state_dict(load_checkpoint_file(path), strict=False)
    missing = [k for k in missing if not _BENIGN.match(k)]
    unexpected = [k for k in unexpected if not _BENIGN.match(k)]
    if missing or unexpected:
        raise ConversionError(f"the original {what} does not load {path}: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")


def build_original(encoder: str, decoder: str, fc_dim: int, num_class: int, empty_weights: Path):
    """The original encoder and decoder modules for our architecture names, with ``ModelBuilder``; the ``dilated16``
    encoders are ``ResnetDilated(dilate_scale=16)``, which mit-semseg 1.0.0 has but its ModelBuilder no longer names
    (the 2018 code's resnetXX_dilated16). ``empty_weights`` (a file holding ``{}``) stops ImageNet downloads."""
    from mit_semseg.models import ModelBuilder
    from mit_semseg.models import resnet as original_resnet
    from mit_semseg.models.models import ResnetDilated

    with contextlib.redirect_stdout(io.StringIO()):  # ModelBuilder prints "Loading weights for ..."
        match = re.fullmatch(r"resnet(\d+)dilated16", encoder)
        if match:
            net_encoder = ResnetDilated(original_resnet.__dict__[f"resnet{match[1]}"](pretrained=False),
                                        dilate_scale=16)
        else:
            net_encoder = ModelBuilder.build_encoder(arch=encoder, fc_dim=fc_dim, weights=str(empty_weights))
        net_decoder = ModelBuilder.build_decoder(arch=decoder, fc_dim=fc_dim, num_class=num_class,
                                                 weights=str(empty_weights), use_softmax=False)
    return net_encoder, net_decoder


@torch.no_grad()
def original_logits(original: dict, checkpoints: Sequence[Path], pixel_values: torch.Tensor) -> torch.Tensor:
    """The original model's classifier output (before log-softmax/resize), computed with ``mit_semseg``; configs and
    architecture names of either era (see ``convert_csail``)."""
    fields = original_fields(original)
    encoder_arch, decoder_arch = fields["encoder"], fields["decoder"]
    fc_dim = fields["fc_dim"] or 2048
    encoder_path, decoder_path = encoder_decoder_paths([Path(p) for p in checkpoints])
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        encoder, decoder = build_original(encoder_arch, decoder_arch, fc_dim, fields["num_class"], empty)
    _load(encoder, encoder_path, f"encoder {encoder_arch}")
    _load(decoder, decoder_path, f"decoder {decoder_arch}")
    encoder.eval()
    decoder.eval()
    last = decoder.conv_last[-1] if isinstance(decoder.conv_last, torch.nn.Sequential) else decoder.conv_last
    captured = {}
    handle = last.register_forward_hook(lambda m, i, o: captured.setdefault("logits", o))
    try:
        decoder(encoder(pixel_values, return_feature_maps=True))
    finally:
        handle.remove()
    return captured["logits"]
