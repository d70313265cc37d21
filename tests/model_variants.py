"""The family variants the shared model tester runs, each built from its family's ``tiny_config``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from hf_seg.families import family_module, get_family
from hf_seg.modeling.setr.configuration_setr import (
    fcn_head, hlg_up_head, mla_aux_head, mla_head, pup_aux_head, pup_head,
)


@dataclass(frozen=True, eq=False)  # hashed by identity: pytest groups module-scoped parameters by value
class Variant:
    name: str
    family: str
    overrides: dict = field(default_factory=dict)
    size: tuple[int, int] = (32, 32)
    num_hidden_states: int = 0  # the embedding / stem output + one per layer or stage
    has_attention: bool = True
    # the other CSAIL encoder x decoder pairs (full-width, fixed architectures): only the checks that run their own
    # code paths (forward contract, gradient checkpointing); their module types are covered by the light variants
    heavy: bool = False
    # only under ``-m slow``: a heavy pair whose encoder code (and its checkpointing) another variant already runs and
    # whose decoder's forward and loss the live CSAIL parity tests (test_csail.py) compare with the original
    slow: bool = False

    def config(self, **overrides):
        return family_module(self.family).tiny_config(**{**self.overrides, **overrides})

    def model(self, seed: int = 0, **overrides):
        torch.manual_seed(seed)
        return get_family(self.family).model_class(self.config(**overrides))

    def inputs(self, batch: int = 2, seed: int = 0, labels: bool = False) -> dict:
        g = torch.Generator().manual_seed(seed)
        out = {"pixel_values": torch.randn(batch, 3, *self.size, generator=g)}
        if labels:
            num_labels = self.config().num_labels
            y = torch.randint(0, num_labels, (batch, *self.size), generator=g)
            y[:, : self.size[0] // 8] = 255  # an ignored band
            out["labels"] = y
            if self.family == "unept":  # the boundary targets, made once (the model would derive them on CPU)
                from hf_seg.modeling.unept import dt_offset_targets

                out["distance_map"], out["angle_map"] = dt_offset_targets(y)
        return out


VARIANTS = [
    Variant("setr-naive", "setr", num_hidden_states=5),
    Variant("setr-pup", "setr", dict(decode_head=pup_head(3), auxiliary_heads=[pup_aux_head(1)]),
            num_hidden_states=5),
    Variant("setr-mla", "setr", dict(backbone="vit_mla", mla_index=(0, 1, 2, 3), decode_head=mla_head(8),
                                     auxiliary_heads=[mla_aux_head(1)]), num_hidden_states=5),
    Variant("setr-hlg", "setr", dict(backbone="hlg", image_size=64, hlg_embed_dims=(16, 32, 32, 64),
                                     hlg_num_heads=(1, 2, 2, 4), hlg_depths=(1, 2, 1, 1),
                                     hlg_crs_interval=(2, 2, 1, 1), hlg_window_size=2,
                                     decode_head=hlg_up_head(32, 2, 2), auxiliary_heads=[fcn_head(2, 16)]),
            size=(64, 64), num_hidden_states=5),
    Variant("regionproxy-vit", "regionproxy", num_hidden_states=4),
    Variant("regionproxy-hybrid", "regionproxy", dict(
        backbone_type="hybrid", image_size=[64, 64], patch_size=32, out_indices=[-1, 1], num_hidden_layers=2,
        hybrid_layers=[1, 1, 1, 1], hybrid_stem_channels=32, hybrid_channels=[128, 128, 128, 128]),
        size=(64, 64), num_hidden_states=3),
    # the reference MSDA (bit-reproducible across processes); the compiled kernel has its own tests
    Variant("unept-res", "unept", dict(msda_backend="pytorch"), num_hidden_states=5),
    Variant("unept-deit", "unept", dict(backbone="deit", msda_backend="pytorch"), num_hidden_states=4),
    Variant("semask", "semask", num_hidden_states=4),
    Variant("csail-mobilenetv2dilated-c1_deepsup", "csail", num_hidden_states=6, has_attention=False),
    Variant("csail-mobilenetv2dilated-ppm_deepsup", "csail", dict(arch_decoder="ppm_deepsup"), num_hidden_states=6,
            has_attention=False, heavy=True, slow=True),
    Variant("csail-resnet18dilated-ppm", "csail", dict(arch_encoder="resnet18dilated", arch_decoder="ppm"),
            num_hidden_states=5, has_attention=False, heavy=True, slow=True),
    Variant("csail-resnet18-c1", "csail", dict(arch_encoder="resnet18", arch_decoder="c1"), size=(64, 64),
            num_hidden_states=5, has_attention=False, heavy=True),
    Variant("csail-resnet50-upernet_lite", "csail", dict(arch_encoder="resnet50", arch_decoder="upernet_lite"),
            size=(64, 64), num_hidden_states=5, has_attention=False, heavy=True, slow=True),
    Variant("csail-hrnetv2-c1", "csail", dict(arch_encoder="hrnetv2", arch_decoder="c1"), num_hidden_states=2,
            has_attention=False, heavy=True),
]
LIGHT = [v for v in VARIANTS if not v.heavy]
# one variant per family, for the checks whose cost is per family (export, reload paths)
PER_FAMILY = [next(v for v in VARIANTS if v.family == family)
              for family in ("setr", "regionproxy", "unept", "semask", "csail")]


def ids(variants) -> list[str]:
    return [v.name for v in variants]


def params(variants) -> list:
    """``pytest.param`` per variant, named after it; the ``slow`` ones marked so (CI deselects them)."""
    return [pytest.param(v, id=v.name, marks=[pytest.mark.slow] if v.slow else []) for v in variants]
