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
from .convert_csail import encoder_decoder_paths

# SynchronizedBatchNorm bookkeeping and BN counters: present in one of (checkpoint, module) only, never used
_BENIGN = re.compile(r".*(num_batches_tracked|_tmp_running_mean|_tmp_running_var|_running_iter)$")


def _load(module: torch.nn.Module, path: Path, what: str) -> None:
    missing, unexpected = module.load_state_dict(load_checkpoint_file(path), strict=False)
    missing = [k for k in missing if not _BENIGN.match(k)]
    unexpected = [k for k in unexpected if not _BENIGN.match(k)]
    if missing or unexpected:
        raise ConversionError(f"the original {what} does not load {path}: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")


@torch.no_grad()
def original_logits(original: dict, checkpoints: Sequence[Path], pixel_values: torch.Tensor) -> torch.Tensor:
    """The original model's classifier output (before log-softmax/resize), computed with ``mit_semseg``."""
    from mit_semseg.models import ModelBuilder

    model_cfg, dataset = original["MODEL"], original.get("DATASET", {})
    encoder_arch, decoder_arch = model_cfg["arch_encoder"].lower(), model_cfg["arch_decoder"].lower()
    fc_dim = int(model_cfg.get("fc_dim", 2048))
    num_class = int(dataset.get("num_class", 150))
    encoder_path, decoder_path = encoder_decoder_paths([Path(p) for p in checkpoints])
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)  # a weights path stops ModelBuilder from downloading ImageNet weights
        with contextlib.redirect_stdout(io.StringIO()):  # ModelBuilder prints "Loading weights for ..."
            encoder = ModelBuilder.build_encoder(arch=encoder_arch, fc_dim=fc_dim, weights=str(empty))
            decoder = ModelBuilder.build_decoder(arch=decoder_arch, fc_dim=fc_dim, num_class=num_class,
                                                 weights=str(empty), use_softmax=False)
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
