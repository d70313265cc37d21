"""SETR family: parity with the original (fixtures), model behaviour, converter refusals, presets."""

import json
import re

import pytest
import torch

import hf_seg  # noqa: F401  (registers the Auto classes)
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

from fixture_utils import assert_close, case_id, convert_with_cli, fixture_cases, load_case
from hf_seg.modeling.setr import SetrConfig, SetrForSemanticSegmentation
from hf_seg.modeling.setr import tiny_config as setr_tiny_config
from hf_seg.modeling.setr.configuration_setr import (
    fcn_head, hlg_up_head, mla_aux_head, mla_head, naive_head, pup_aux_head, pup_head,
)
from hf_seg.zoo import build_config, list_models

CASES = fixture_cases("setr")
# converter-refusal tests edit a Naive ViT case (the bundled one is always there)
NAIVE_VIT_CASE = next((c for c in CASES if "type='VisionTransformer'" in (c / "config.py").read_text()
                       and "num_conv=2" in (c / "config.py").read_text()), None)


def _window(case_data):
    """Inputs the fixture's logits/losses were computed on: the first slide window for slide cases."""
    x, y = case_data["input"]["pixel_values"], case_data["labels"]["labels"]
    slide = case_data["meta"].get("slide")
    if slide:
        (ch, cw), (y0, x0) = slide["crop_size"], slide.get("first_window_yx", (0, 0))
        x, y = x[:, :, y0:y0 + ch, x0:x0 + cw], y[:, y0:y0 + ch, x0:x0 + cw]
    return x, y


@pytest.mark.parity
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_parity_with_original(case, converted, record_property):
    data = load_case(case)
    meta, expected = data["meta"], data["expected"]
    model = AutoModelForSemanticSegmentation.from_pretrained(converted(case)).eval()
    assert isinstance(model, SetrForSemanticSegmentation)
    x, y = _window(data)
    with torch.no_grad():
        out = model(pixel_values=x, labels=y, output_hidden_states=True)
    record_property("logits_max_abs_diff", assert_close(out.logits, expected["logits"], "logits"))
    aux_keys = sorted((k for k in expected if k.startswith("aux_logits_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    assert len(out.auxiliary_logits) == len(aux_keys)
    for key, aux in zip(aux_keys, out.auxiliary_logits):
        assert_close(aux, expected[key], key)
    # backbone tensors the heads read
    for key, value in expected.items():
        if key.startswith("vit_tokens_layer"):
            tokens = out.hidden_states[int(key[len("vit_tokens_layer"):]) + 1]  # [0] is the embedding
            if model.config.backbone == "vit_mla":  # VIT_MLA dropped the cls token before the blocks
                value = value[:, 1:] if value.shape[1] == tokens.shape[1] + 1 else value
            assert_close(tokens, value, key)
    mla_keys = sorted(k for k in expected if k.startswith("mla_out_"))
    if mla_keys:
        with torch.no_grad():
            _, maps, _ = model.backbone(x)
        for key in mla_keys:
            assert_close(maps[int(key.rsplit("_", 1)[1])], expected[key], key)
    # losses: the total and every weighted head term, as mmseg's forward_train reports them
    losses = meta["losses"]
    assert_close(out.loss, torch.tensor(losses["loss"]), "loss")
    names = ["decode.loss_seg"] + [f"aux_{i}.loss_seg" for i in range(len(aux_keys))]
    for name, term in zip(names, out.loss_terms):
        assert_close(term, torch.tensor(losses[name]), name)


@pytest.mark.parity
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_inference_output_and_prediction(case, converted):
    """``logits_resized`` (whole or slide inference over the full input) through the shared inference helper."""
    data = load_case(case)
    meta, expected = data["meta"], data["expected"]
    model = AutoModelForSemanticSegmentation.from_pretrained(converted(case)).eval()
    x = data["input"]["pixel_values"]
    if meta["test_mode"] == "whole":
        with torch.no_grad():
            logits = model(pixel_values=x).logits
        spec = model.config.decode_head
        resized = torch.nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear",
                                                  align_corners=spec["align_corners"]) \
            if logits.shape[-2:] != x.shape[-2:] else logits
    else:
        from hf_seg import inference

        assert model.config.test_mode == "slide"
        assert model.config.test_crop_size == meta["slide"]["crop_size"]
        assert model.config.test_stride == meta["slide"]["stride"]
        with torch.no_grad():
            resized = inference.predict(model, x, mode="slide")
        resized = getattr(resized, "logits", resized)
    assert_close(resized, expected["logits_resized"], "logits_resized")
    assert torch.equal(resized.argmax(1), expected["seg_pred"])


# ------------------------------------------------------------------------------------------ converter refusals
def _rewrite_checkpoint(case, tmp_path, edit):
    obj = torch.load(case / "checkpoint.pth", weights_only=True)
    edit(obj["state_dict"])
    path = tmp_path / "checkpoint.pth"
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("what", ["extra", "missing", "shape"])
def test_converter_refuses_mismatched_checkpoints(what, tmp_path):
    case = NAIVE_VIT_CASE
    if what == "extra":
        path = _rewrite_checkpoint(case, tmp_path, lambda sd: sd.__setitem__("backbone.surprise.weight",
                                                                             torch.zeros(3)))
        key = "backbone.surprise.weight"
    elif what == "missing":
        path = _rewrite_checkpoint(case, tmp_path, lambda sd: sd.pop("decode_head.norm.weight"))
        key = "decode_head.norm.weight"
    else:
        path = _rewrite_checkpoint(case, tmp_path, lambda sd: sd.__setitem__(
            "backbone.pos_embed", sd["backbone.pos_embed"][:, :-1]))
        key = "backbone.pos_embed"
    result = convert_with_cli(case, tmp_path / "out", checkpoints=[path])
    assert result.returncode != 0
    assert key in result.stderr + result.stdout


def test_converter_refuses_configs_it_cannot_build(tmp_path):
    case = NAIVE_VIT_CASE
    text = (case / "config.py").read_text()
    assert "num_conv=2" in text
    (tmp_path / "config.py").write_text(text.replace("num_conv=2", "num_conv=3", 1))
    result = convert_with_cli(case, tmp_path / "out", config=tmp_path / "config.py")
    assert result.returncode != 0 and "num_conv" in result.stderr + result.stdout


# ------------------------------------------------------------------------------------------ tiny-config tester
def tiny_config(kind="naive", **overrides):
    """The family's ``tiny_config()`` (small ViT, Naive head + one Naive aux head) with the other heads swapped in."""
    if kind == "naive":
        return setr_tiny_config(**overrides)
    if kind == "hlg":
        base = dict(backbone="hlg", image_size=64, hlg_embed_dims=(16, 32, 32, 64), hlg_num_heads=(1, 2, 2, 4),
                    hlg_depths=(1, 1, 1, 1), hlg_crs_interval=(2, 2, 1, 1), hlg_window_size=2, num_labels=5,
                    decode_head=hlg_up_head(32, 2, 2), auxiliary_heads=[fcn_head(2, 16)])
        return SetrConfig(**{**base, **overrides})
    if kind == "pup":
        base = dict(backbone="vit", decode_head=pup_head(3), auxiliary_heads=[pup_aux_head(1), pup_aux_head(2)],
                    patch_size=16, image_size=64)
    elif kind == "mla":
        base = dict(backbone="vit_mla", mla_index=(0, 1, 2, 3), decode_head=mla_head(8),
                    auxiliary_heads=[mla_aux_head(i) for i in range(4)])
    else:
        raise ValueError(kind)
    return setr_tiny_config(**{**base, **overrides})


KINDS = ["naive", "pup", "mla", "hlg"]


def _tiny(kind):
    torch.manual_seed(0)
    return SetrForSemanticSegmentation(tiny_config(kind)).eval()


def test_loss_averages_over_all_pixels_like_mmseg():
    model = _tiny("naive")
    x = torch.randn(1, 3, 32, 32)
    labels = torch.randint(0, 5, (1, 32, 32))
    half = labels.clone()
    half[:, :16] = 255
    with torch.no_grad():
        out = model(pixel_values=x, labels=half, output_auxiliary_logits=True)
        per_pixel = torch.nn.functional.cross_entropy(out.logits, half, ignore_index=255, reduction="none")
    assert torch.allclose(out.loss_terms[0], per_pixel.sum() / half.numel())


def test_other_input_sizes_interpolate_the_position_embedding():
    """Inputs other than the crop (e.g. the small border windows of slide inference) run with a resized pos_embed."""
    model = _tiny("naive")
    with torch.no_grad():
        out = model(pixel_values=torch.randn(1, 3, 40, 56))
        assert out.logits.shape == (1, 5, 40, 56)
        pos = model.backbone.position_embedding((5, 7))
    assert pos.shape == (1, 1 + 35, 32)
    assert torch.equal(pos[:, 0], model.backbone.pos_embed[:, 0])


def test_slide_inference_agrees_with_whole_inference_where_it_should():
    """A window grid that covers a non-multiple image with one window is exactly whole inference."""
    from hf_seg import inference

    model = _tiny("naive")
    model.config.test_mode, model.config.test_crop_size, model.config.test_stride = "slide", [64, 64], [48, 48]
    x = torch.randn(1, 3, 37, 53)  # smaller than the crop and not a multiple of the patch or the stride
    with torch.no_grad():
        whole = model(pixel_values=x).logits
        slid = inference.predict(model, x, mode="slide")
    slid = getattr(slid, "logits", slid)
    assert_close(slid, whole, "slide vs whole")


@pytest.mark.parametrize("kwargs,match", [
    (dict(backbone="resnet"), "backbone"),
    (dict(decode_head=mla_head()), "cannot be used"),
    (dict(decode_head=dict(type="vit_up", in_index=3, num_conv=1, num_upsample_layers=1)), "num_upsampe_layer"),
    (dict(decode_head=naive_head(9)), "outside"),
    (dict(hidden_size=30, num_attention_heads=4), "divisible"),
    (dict(backbone="vit_mla", mla_index=(0, 1, 2), decode_head=mla_head()), "mla_index"),
    (dict(backbone="vit_mla", mla_index=(0, 1, 2, 3), mla_channels=64, decode_head=mla_head(),
          auxiliary_heads=[mla_aux_head(0)]), "256"),
    (dict(decode_head=dict(type="vit_up", in_index=0, colour="red")), "unknown keys"),
])
def test_config_refuses_what_cannot_be_built(kwargs, match):
    base = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=2)
    with pytest.raises(ValueError, match=match):
        SetrConfig(**{**base, **kwargs})


# ---------------------------------------------------------------------------------------------------- presets
ZOO = {e.original_name: e for e in list_models("setr")}


def _zoo_facts():
    from pathlib import Path
    import os

    for base in [os.environ.get("HF_SEG_FIXTURES")]:
        if base and (Path(base) / "setr" / "zoo.json").is_file():
            return json.loads((Path(base) / "setr" / "zoo.json").read_text())
    return None


def test_presets_cover_every_released_row():
    facts = _zoo_facts()
    if facts is None:
        pytest.skip("zoo.json facts not available")
    assert sorted(m["name"] for m in facts["models"]) == sorted(ZOO)
    for row in facts["models"]:
        entry = ZOO[row["name"]]
        assert entry.paper.miou_single_scale == row["miou_ss"]
        assert entry.paper.miou_multi_scale == row["miou_ms_flip"]
        assert entry.checkpoint_urls == ((row["checkpoint_url"],) if row["checkpoint_url"] else ())
        test = row.get("test") or {}
        assert entry.config["test_mode"] == test.get("mode", "slide")
        if "crop_size" in test:
            assert entry.config["test_crop_size"] == test["crop_size"]
            assert entry.config["test_stride"] == test["stride"]


@pytest.mark.parametrize("entry", list_models("setr"), ids=lambda e: e.name)
def test_every_preset_builds_a_config(entry):
    config = build_config(entry.name)
    assert config.test_mode == "slide" and config.test_crop_size == list(entry.crop_size)
    assert config.id2label and len(config.id2label) == config.num_labels
    expected = {"cityscapes": 19, "ade20k": 150}.get(entry.dataset, 60)
    assert config.num_labels == expected


def _conv_seg_params(config):
    return (1 + len(config.auxiliary_heads)) * (512 * config.num_labels + config.num_labels)


@pytest.mark.parametrize("entry", [e for e in list_models("setr") if e.config["backbone"] != "hlg"],
                         ids=lambda e: e.name)
def test_full_size_parameter_counts_match_the_original(entry):
    """Built on the meta device: the original's count minus the never-used conv_seg layers it also builds."""
    facts = _zoo_facts()
    row = next((m for m in facts["models"] if m["name"] == entry.original_name), None) if facts else None
    num_classes = row["num_classes"] if row else None
    overrides = {"id2label": {i: str(i) for i in range(num_classes)}} if num_classes else {}
    config = build_config(entry.name, **overrides)
    with torch.device("meta"):
        model = SetrForSemanticSegmentation(config)
    total = sum(p.numel() for p in model.parameters())
    without_aux = total - sum(p.numel() for p in model.auxiliary_heads.parameters())
    if "embed_dim=1024 != backbone.embed_dim=768" in entry.notes:
        # the released PUP-DeiT ADE20K / Pascal-Context configs give their heads 1024-wide LayerNorms/convs for a
        # 768-wide backbone (they cannot run); ours are as wide as the backbone
        gap = (1 + len(config.auxiliary_heads)) * 2 * 256 + 256 * 256 * 9 * (1 + len(config.auxiliary_heads))
        assert entry.extra["num_params_original"] - _conv_seg_params(config) - total == gap
        return
    assert total == entry.extra["num_params_original"] - _conv_seg_params(config)
    assert without_aux == entry.extra["num_params_original_without_aux"] - 512 * config.num_labels - config.num_labels


def test_preset_processor_is_the_mmseg_test_protocol():
    from hf_seg.zoo import build_processor

    processor = build_processor("setr-pup-cityscapes-768-40k")
    assert processor.resize_mode == "keep_ratio" and list(processor.scale) == [2049, 1025]
    assert not processor.do_rescale and processor.image_mean == [123.675, 116.28, 103.53]
    processor = build_processor("setr-naive-ade20k-512")
    assert list(processor.scale) == [2048, 512] and processor.do_reduce_labels


@pytest.mark.parametrize("case", CASES[:1], ids=case_id)
def test_converted_processor_follows_the_original_test_pipeline(case, converted):
    processor = AutoImageProcessor.from_pretrained(converted(case))
    assert processor.resize_mode == "keep_ratio" and not processor.do_rescale
    assert processor.image_std == [58.395, 57.12, 57.375] and processor.channel_order == "RGB"


# ------------------------------------------------------------------------------------------------------- HLG
def test_hlg_window_partition_round_trips_and_masks_padding():
    from hf_seg.modeling.setr.modeling_hlg import Windows

    x = torch.randn(2, 10, 12, 3)
    for kind, interval in [("local", None), ("dilated", None), ("dilated", 4)]:
        win = Windows(10, 12, kind, 7, interval=interval)
        groups = win.split(win.pad(x))
        assert torch.equal(win.merge(groups, 2), x)
        valid = win.valid(x.device)
        assert int(valid.sum()) == 10 * 12 and valid.shape == (win.nh * win.nw, win.gh * win.gw)
        assert win.centre_coords(x.device).shape == (win.nh * win.nw, 2)


@pytest.mark.parametrize("dims,heads,depths,paper_m", [
    ((64, 128, 256, 512), (2, 4, 8, 16), (2, 2, 6, 2), 11),  # HLG-Tiny, README ImageNet table
    ((96, 192, 384, 768), (3, 6, 12, 24), (2, 2, 6, 2), 24),  # HLG-Small
])
def test_hlg_backbone_size_matches_the_readme(dims, heads, depths, paper_m):
    """The reconstructed backbone + a 1000-way classifier has the README's ImageNet parameter count (rounded)."""
    from hf_seg.modeling.setr.modeling_hlg import HLGTransformer

    config = SetrConfig(backbone="hlg", image_size=224, hlg_embed_dims=dims, hlg_num_heads=heads, hlg_depths=depths)
    with torch.device("meta"):
        backbone = HLGTransformer(config)
    total = sum(p.numel() for p in backbone.parameters()) + dims[3] * 1000 + 1000
    assert round(total / 1e6) == paper_m


def test_hlg_presets_build_at_full_size():
    for entry in [e for e in list_models("setr") if e.config["backbone"] == "hlg"]:
        with torch.device("meta"):
            model = SetrForSemanticSegmentation(build_config(entry.name))
        assert len(model.auxiliary_heads) == 1 and model.auxiliary_heads[0].in_index == 2
        assert sum(p.numel() for p in model.parameters()) > 3e7


def _hlg_original_name(key: str) -> str:
    """Our HLG key -> the segmentation code's: its conv-BN(-act) Sequentials are indexed, ours ConvNormAct."""
    key = re.sub(r"(spatial_smooth\.0)\.(\d)\.(conv|bn)\.", lambda m: f"{m[1]}.{3 * int(m[2]) + (m[3] == 'bn')}.", key)
    key = key.replace("decode_head.fuse.conv.", "decode_head.conv_0.").replace("decode_head.fuse.bn.",
                                                                               "decode_head.syncbn_fc_0.")
    return re.sub(r"(s0_conv\.\d|down_proj\.proj)\.(conv|bn)\.", lambda m: f"{m[1]}.{int(m[2] == 'bn')}.", key)


def test_hlg_checkpoint_names_convert_by_name(tmp_path):
    """An mmseg-style HLG checkpoint (the segmentation code's module names) converts with a config in the original
    format: names are kept, except the conv-BN Sequential indices, which the rename table maps."""
    torch.manual_seed(0)
    model = SetrForSemanticSegmentation(tiny_config("hlg", hlg_window_size=7)).eval()  # the original's fixed window
    state = {_hlg_original_name(f"backbone.{k}"): v for k, v in model.backbone.state_dict().items()}
    state.update({_hlg_original_name(f"decode_head.{k}"): v for k, v in model.decode_head.state_dict().items()})
    state.update({f"auxiliary_head.{k}": v for k, v in model.auxiliary_heads[0].state_dict().items()})
    assert "backbone.s0_conv.0.1.running_var" in state and "backbone.block1.0.spatial_smooth.0.7.bias" in state
    torch.save({"state_dict": state}, tmp_path / "hlg.pth")
    c = model.config
    (tmp_path / "config.py").write_text(f"""
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(type='EncoderDecoder',
    backbone=dict(type='HLGTransformer', img_size=64, patch_size=4, embed_dims={c.hlg_embed_dims},
                  num_heads={c.hlg_num_heads}, depths={c.hlg_depths}, qkv_bias=True, crs_interval={c.hlg_crs_interval}),
    decode_head=dict(type='HLGUPHead', in_channels={c.hlg_embed_dims}, in_index=[0, 1, 2, 3], fuse_level=0,
                     channels=32, depth=2, sr_ratio=2, num_classes=5, norm_cfg=norm_cfg, align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(type='FCNHead', in_channels=32, in_index=2, channels=16, num_convs=1, concat_input=False,
                        num_classes=5, norm_cfg=norm_cfg, align_corners=False,
                        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)))
test_cfg = dict(mode='whole')
""")
    from hf_seg.conversion import convert_original

    converted, _, report = convert_original(tmp_path / "config.py", [tmp_path / "hlg.pth"])
    assert not report.dropped
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(converted(pixel_values=x).logits, model(pixel_values=x).logits)


def test_imagenet_vit_weights_load_with_pos_embed_interpolation():
    """SETR initialises from timm ViT/DeiT weights at 384 and resizes the position grid to the crop."""
    import timm

    vit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, num_classes=10)
    config = SetrConfig(image_size=64, patch_size=16, hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                        decode_head=naive_head(11), num_labels=5)
    model = SetrForSemanticSegmentation(config)
    skipped = model.backbone.load_imagenet_weights(vit.state_dict())
    assert "dist_token" in skipped and "head.weight" in skipped and "norm.weight" in skipped
    pos = vit.pos_embed.detach()
    assert torch.equal(model.backbone.pos_embed[:, 0], pos[:, 0])  # cls entry kept, distillation entry dropped
    grid = pos[:, 2:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(model.backbone.pos_embed[:, 1:], expected.flatten(2).transpose(1, 2), atol=1e-6)
    assert torch.equal(model.backbone.blocks[3].attn.qkv.weight, vit.blocks[3].attn.qkv.weight)
