"""SeMask-FPN: parity with the original (fixtures), an independent reference of the backbone math on inputs that need
window padding, a tiny-config tester, converter refusals, the OHEM sampler, and the zoo presets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import hf_seg  # noqa: F401  (registers the Auto classes)
from fixture_utils import assert_close, case_id, convert_with_cli, fixture_cases, load_case
from hf_seg import zoo
from hf_seg.modeling.semask import SeMaskConfig, SeMaskForSemanticSegmentation, tiny_config
from hf_seg.modeling.semask.configuration_semask import default_semantic_layer_types
from transformers import AutoModelForSemanticSegmentation

CASES = fixture_cases("semask")
ZOO_JSON = Path(__file__).parent / "fixtures" / "semask" / "zoo.json"


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial values everywhere (gamma and mlp_res start at 0, which would switch the semantic layers off)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif "norm" in name and name.endswith("weight") or name.endswith("gamma") or ".1.weight" in name:
                p.copy_(torch.rand(p.shape, generator=g) * 0.8 + 0.6)
            else:
                p.copy_((torch.rand(p.shape, generator=g) - 0.5) * 0.4)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_((torch.rand(b.shape, generator=g) - 0.5) * 0.6)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.parity
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_parity_with_original(case, tmp_path):
    data = load_case(case)
    result = convert_with_cli(case, tmp_path / "converted")
    assert result.returncode == 0, result.stderr
    model = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "converted").eval()
    assert isinstance(model, SeMaskForSemanticSegmentation)
    # the processor encodes the config's test protocol: keep-ratio resize to img_scale, 0..255 mean/std
    processor = json.loads((tmp_path / "converted" / "preprocessor_config.json").read_text())
    assert processor["resize_mode"] == "keep_ratio" and processor["do_rescale"] is False
    assert processor["image_mean"] == [123.675, 116.28, 103.53] and processor["antialias"] is False
    meta, expected = data["meta"], data["expected"]
    kinds = {"SWSeMaskBlock": "windowed", "SeMaskBlock": "global"}
    assert model.config.semantic_layer_types == [kinds[k] for k in meta["semantic_layer_per_stage"]]
    assert model.config.num_prior_classes == meta["backbone_num_cls"]

    pixel_values, labels = data["input"]["pixel_values"], data["labels"]["labels"]
    with torch.no_grad():
        out = model(pixel_values, labels=labels, output_hidden_states=True)
        terms = model.compute_losses(out.logits, out.cls_logits, labels)
    diffs = {
        "logits": assert_close(out.logits, expected["logits"], "logits"),
        "cls_logits": assert_close(out.cls_logits, expected["cls_logits"], "cls_logits"),
        "logits_resized": assert_close(
            F.interpolate(out.logits, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False),
            expected["logits_resized"], "logits_resized"),
    }
    for i, (feature, prior) in enumerate(zip(out.hidden_states[1:], out.class_prior_maps)):  # [0]: the embedding
        diffs[f"features_{i}"] = assert_close(feature, expected[f"backbone_features_{i}"], f"features_{i}")
        diffs[f"prior_{i}"] = assert_close(prior, expected[f"backbone_cls_map_{i}"], f"class_prior_map_{i}")
    assert len(out.class_prior_maps) == len([k for k in expected if k.startswith("backbone_cls_map_")])
    losses = meta["losses"]
    for name, value in (("loss_ce", terms["loss_ce"]), ("loss_cate", terms["loss_cate"])):
        assert value.item() == pytest.approx(losses[f"decode.{name}"], rel=1e-4), name
    total = losses["decode.loss_ce"] + losses["decode.loss_cate"]
    assert out.loss.item() == pytest.approx(total, rel=1e-4)
    print(f"{case.name}: max abs diffs {diffs}; loss {out.loss.item():.6f} vs {total:.6f}")


# -------------------------------------------------------------------- independent reference of the math
def _ref_window_attention(attn, x, mask):
    """x: [nW*B, N, C]; explicit softmax(q k^T * scale + bias (+ mask)) v."""
    windows, n, c = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x).reshape(windows, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
    scores = q @ k.transpose(-2, -1)
    table = attn.relative_position_bias_table
    ws = attn.window_size[0]
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    index = rel[..., 0] * (2 * ws - 1) + rel[..., 1]
    scores = scores + table[index.reshape(-1)].reshape(n, n, heads).permute(2, 0, 1)[None]
    if mask is not None:
        scores = (scores.reshape(-1, mask.shape[0], heads, n, n) + mask[None, :, None]).reshape(windows, heads, n, n)
    return attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(windows, n, c))


def _partition(x, ws):
    b, h, w, c = x.shape
    return x.reshape(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def _merge(windows, ws, h, w):
    c = windows.shape[-1]
    return windows.reshape(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def _ref_shift_mask(hp, wp, ws, shift):
    img = torch.zeros(1, hp, wp, 1)
    count = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = count
            count += 1
    windows = _partition(img, ws)[..., 0]
    diff = windows[:, None, :] - windows[:, :, None]
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


def _ref_semantic(layer, x, h, w):
    """The original SWSeMaskBlock / SeMaskBlock on tokens [B, H*W, C]."""
    b, _, c = x.shape
    x = layer.norm1(x)
    ws = layer.window_size
    if ws is not None:
        grid = F.pad(x.reshape(b, h, w, c), (0, 0, 0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
        hp, wp = grid.shape[1:3]
        x = _partition(grid, ws)
    for blk in layer.class_injection:
        seg_map = blk.mlp_cls_q(x)
        scores = (seg_map @ blk.mlp_cls_k(x).transpose(-2, -1)).softmax(-1)
        x = blk.gamma * blk.mlp_res(scores @ blk.mlp_v(x)) + x
    if ws is not None:
        x = _merge(x, ws, hp, wp)[:, :h, :w].reshape(b, h * w, c)
        seg_map = _merge(seg_map, ws, hp, wp)[:, :h, :w].reshape(b, h * w, -1)
    return seg_map, x


def reference_backbone(backbone, pixel_values):
    """The original SeMaskSwinTransformer forward, written out with explicit loops and softmax attention."""
    x = pixel_values
    p = backbone.patch_embed.proj.kernel_size[0]
    x = F.pad(x, (0, (p - x.shape[-1] % p) % p, 0, (p - x.shape[-2] % p) % p))
    x = backbone.patch_embed.proj(x)
    b, c, h, w = x.shape
    x = backbone.patch_embed.norm(x.flatten(2).transpose(1, 2))
    if backbone.absolute_pos_embed is not None:
        pos = F.interpolate(backbone.absolute_pos_embed, size=(h, w), mode="bicubic")
        x = x + pos.flatten(2).transpose(1, 2)
    features, priors = [], []
    for stage, out_norm in zip(backbone.layers, backbone.norms):
        ws = stage.window_size
        hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
        mask = _ref_shift_mask(hp, wp, ws, ws // 2)
        for block in stage.blocks:
            c = x.shape[-1]
            shortcut = x
            grid = F.pad(block.norm1(x).reshape(b, h, w, c), (0, 0, 0, wp - w, 0, hp - h))
            if block.shift:
                grid = torch.roll(grid, (-block.shift, -block.shift), (1, 2))
            attended = _merge(_ref_window_attention(block.attn, _partition(grid, ws), mask if block.shift else None),
                              ws, hp, wp)
            if block.shift:
                attended = torch.roll(attended, (block.shift, block.shift), (1, 2))
            x = shortcut + attended[:, :h, :w].reshape(b, h * w, c)
            x = x + block.mlp.fc2(F.gelu(block.mlp.fc1(block.norm2(x))))
        prior, x = _ref_semantic(stage.semantic_layer, x, h, w)
        features.append(out_norm(x).reshape(b, h, w, -1).permute(0, 3, 1, 2))
        priors.append(prior.reshape(b, h, w, -1).permute(0, 3, 1, 2))
        if stage.downsample is not None:
            grid = x.reshape(b, h, w, -1)
            grid = F.pad(grid, (0, 0, 0, w % 2, 0, h % 2))
            merged = torch.cat([grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2], grid[:, 1::2, 1::2]], -1)
            h, w = merged.shape[1:3]
            x = stage.downsample.reduction(stage.downsample.norm(merged.reshape(b, h * w, -1)))
    return features, priors


@pytest.mark.parametrize("size", [(92, 148), (61, 45), (28, 200)])
@pytest.mark.parametrize("kinds", [None, ["windowed", "global", "global"]])
def test_backbone_matches_reference_with_window_padding(size, kinds):
    model = randomize(SeMaskForSemanticSegmentation(tiny_config(semantic_layer_types=kinds, semantic_window_size=5,
                                                                num_semantic_blocks=[1, 2, 1]))).eval()
    pixel_values = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(pixel_values, output_hidden_states=True)
        ref_features, ref_priors = reference_backbone(model.backbone, pixel_values)
    for i, (ours, ref) in enumerate(zip(out.hidden_states[1:], ref_features)):
        assert_close(ours, ref, f"features_{i}")
    for i, (ours, ref) in enumerate(zip(out.class_prior_maps, ref_priors)):
        assert_close(ours, ref, f"prior_{i}")
    stride4 = (math.ceil(size[0] / 4), math.ceil(size[1] / 4))
    assert out.logits.shape == (2, 6, *stride4)
    assert out.cls_logits.shape == (2, 6, *stride4)


def test_absolute_position_embedding_matches_reference():
    model = randomize(SeMaskForSemanticSegmentation(tiny_config(use_absolute_pos_embed=True, pretrain_img_size=64)))
    assert model.backbone.absolute_pos_embed.shape == (1, 16, 16, 16)
    pixel_values = torch.randn(1, 3, 50, 90, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model.eval()(pixel_values, output_hidden_states=True)
        ref_features, ref_priors = reference_backbone(model.backbone, pixel_values)
    for i, (ours, ref) in enumerate(zip(out.hidden_states[1:] + out.class_prior_maps, ref_features + ref_priors)):
        assert_close(ours, ref, f"output_{i}")


def test_semantic_layer_rule():
    assert default_semantic_layer_types(96, 150, 4) == ["windowed", "windowed", "global", "global"]
    assert default_semantic_layer_types(192, 150, 4) == ["windowed", "windowed", "global", "global"]
    assert default_semantic_layer_types(96, 19, 4) == ["windowed"] * 4
    assert default_semantic_layer_types(128, 150, 4) == ["windowed"] * 4


# ----------------------------------------------------------------------------------------- tiny tester
def _padded_crop_steps(config, steps: int = 2) -> list[tuple[float, float, float]]:
    """(loss, gradient norm on the zero-padded crop, gradient norm on the same image unpadded) for ``steps`` AdamW
    steps, in training mode with the config's dropouts, the way finetuning pads images smaller than the crop."""
    torch.manual_seed(0)
    model = SeMaskForSemanticSegmentation(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    image = torch.randn(1, 3, 40, 48)
    labels = torch.randint(0, config.num_labels, (1, 40, 48))
    padded = F.pad(image, (0, 24, 0, 24))  # zeros after normalisation, as the training pipeline pads
    padded_labels = F.pad(labels, (0, 24, 0, 24), value=255)
    history = []
    for _ in range(steps):
        norms = []
        for x, y in ((image, labels), (padded, padded_labels)):
            optimizer.zero_grad()
            loss = model(x, labels=y).loss
            loss.backward()
            norms.append(torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None]))
        history.append((loss.item(), norms[1].item(), norms[0].item()))
        optimizer.step()
    return history


@pytest.mark.parametrize("size", ["tiny", pytest.param("swin_t", marks=pytest.mark.slow)])
def test_training_on_a_zero_padded_crop_keeps_finite_gradients(size):
    """Zero padding makes all-zero patch tokens unless the patch projection has a bias; their LayerNorm backward is
    scaled by 1/sqrt(eps) at every norm, which overflowed SeMask-T's gradients to inf on padded crops. The original
    initialises the projection with PyTorch's default (non-zero bias) and stays finite; so must we."""
    swin_t = dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7)  # the released T
    config = (tiny_config(drop_path_rate=0.3, semantic_dropout=0.1, decoder_dropout=0.1) if size == "tiny"
              else SeMaskConfig(**swin_t, num_labels=11))
    for loss, padded_norm, unpadded_norm in _padded_crop_steps(config):
        assert math.isfinite(loss) and math.isfinite(padded_norm)
        # padding adds ignored pixels, it must not blow the gradient up (before the fix: x1e4 to x1e12, then inf)
        assert padded_norm < 10 * unpadded_norm, (padded_norm, unpadded_norm)


def test_patch_projection_starts_like_the_originals():
    bias = SeMaskForSemanticSegmentation(tiny_config()).backbone.patch_embed.proj.bias
    bound = 1 / math.sqrt(3 * 4 * 4)
    assert bias.abs().max() <= bound and bias.abs().min() > 0 and bias.std() > bound / 4


def test_prior_classes_differ_from_labels():
    """The released COCO-Stuff models: 171 labels, 150 prior classes; labels >= 150 are left out of loss_cate."""
    model = SeMaskForSemanticSegmentation(tiny_config(num_labels=9, num_prior_classes=5)).eval()
    labels = torch.randint(0, 9, (1, 48, 48))
    out = model(torch.randn(1, 3, 48, 48), labels=labels)
    assert out.logits.shape[1] == 9 and out.cls_logits.shape[1] == 5
    assert torch.isfinite(out.loss)


def _reference_ohem(logits, labels, ignore, min_kept, thresh):
    """mmseg 0.11 OHEMPixelSampler, step by step."""
    valid = labels != ignore
    weight = torch.zeros(labels.shape)
    valid_weight = weight[valid]
    kept = min_kept * labels.shape[0]
    if thresh is None:
        losses = F.cross_entropy(logits, labels, ignore_index=ignore, reduction="none")
        order = losses[valid].sort(descending=True).indices
        valid_weight[order[:kept]] = 1.0
    else:
        prob = logits.softmax(1).gather(1, labels.masked_fill(~valid, 0)[:, None])[:, 0]
        sorted_prob = prob[valid].sort().values
        minimum = sorted_prob[min(kept, sorted_prob.numel() - 1)] if sorted_prob.numel() else 0.0
        valid_weight[prob[valid] < max(minimum, thresh)] = 1.0
    weight[valid] = valid_weight
    return weight


@pytest.mark.parametrize("min_kept,thresh", [(50, None), (5000, None), (50, 0.7), (5000, 0.7), (30, 0.01)])
def test_ohem_sampler(min_kept, thresh):
    model = SeMaskForSemanticSegmentation(tiny_config(ohem_min_kept=min_kept, ohem_thresh=thresh))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 20, 30, generator=g)
    labels = torch.randint(0, 6, (2, 20, 30), generator=g)
    labels[torch.rand(labels.shape, generator=g) < 0.2] = 255
    losses = F.cross_entropy(logits, labels, ignore_index=255, reduction="none")
    ours = model._ohem_weight(logits, labels, losses)
    assert torch.equal(ours, _reference_ohem(logits, labels, 255, min_kept, thresh))


# ------------------------------------------------------------------------------------------- converter
def _tamper_case(case: Path, tmp_path: Path, edit) -> Path:
    checkpoint = torch.load(case / "checkpoint.pth", map_location="cpu", weights_only=False)
    edit(checkpoint["state_dict"])
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": checkpoint["state_dict"]}, path)
    return path


SMALLEST = min(CASES, key=lambda c: (c / "checkpoint.pth").stat().st_size)


def test_converter_refuses_extra_key(tmp_path):
    path = _tamper_case(SMALLEST, tmp_path, lambda sd: sd.__setitem__("backbone.extra_tensor", torch.zeros(3)))
    result = convert_with_cli(SMALLEST, tmp_path / "out", checkpoints=[path])
    assert result.returncode != 0 and "backbone.extra_tensor" in result.stderr


def test_converter_refuses_missing_key(tmp_path):
    path = _tamper_case(SMALLEST, tmp_path, lambda sd: sd.pop("backbone.layers.0.semantic_layer.class_injection.0.gamma"))
    result = convert_with_cli(SMALLEST, tmp_path / "out", checkpoints=[path])
    assert result.returncode != 0
    assert "backbone.layers.0.semantic_layer.class_injection.0.gamma" in result.stderr


def test_converter_refuses_unsupported_config(tmp_path):
    text = (SMALLEST / "config.py").read_text().replace("qk_scale=None", "qk_scale=0.5")
    config = tmp_path / "config.py"
    config.write_text(text)
    result = convert_with_cli(SMALLEST, tmp_path / "out", config=config)
    assert result.returncode != 0 and "qk_scale" in result.stderr


def test_config_validation():
    with pytest.raises(ValueError, match="num_heads"):
        SeMaskConfig(depths=[2, 2], num_heads=[3])
    with pytest.raises(ValueError, match="semantic block"):
        SeMaskConfig(num_semantic_blocks=[1, 0, 1, 1])
    with pytest.raises(ValueError, match="semantic_layer_types"):
        SeMaskConfig(semantic_layer_types=["windowed", "shifted", "global", "global"])
    with pytest.raises(ValueError, match="ohem_min_kept"):
        SeMaskConfig(ohem_min_kept=1)


# ---------------------------------------------------------------------------------------------- presets
ENTRIES = zoo.list_models("semask")


def test_every_released_row_has_a_preset():
    rows = json.loads(ZOO_JSON.read_text())["models"]
    by_name = {e.original_name: e for e in ENTRIES}
    assert len(ENTRIES) == len(rows) == 12
    for row in rows:
        entry = by_name[row["name"]]
        config, backbone = entry.config, row["backbone"]
        for ours, theirs in (("embed_dim", "embed_dim"), ("depths", "depths"), ("num_heads", "num_heads"),
                             ("window_size", "window_size"), ("semantic_window_size", "sem_window_size")):
            assert config[ours] == backbone[theirs], (row["name"], ours)
        assert list(entry.crop_size) == row["crop_size"]
        assert entry.processor["scale"] == row["test_resize"]["img_scale"]
        assert entry.processor["do_reduce_labels"] == row["reduce_zero_label"]
        assert config.get("ohem_min_kept") == (row["decode_head"].get("sampler") or {}).get("min_kept")
        assert entry.test_mode == row["test_mode"]
        assert (entry.paper.miou_single_scale, entry.paper.miou_multi_scale) == (row["miou_single_scale"],
                                                                                 row["miou_ms_flip"])
        assert entry.checkpoint_urls == (row["checkpoint_url"],)
        assert entry.extra["original_config"] == row["config"]
        built = zoo.build_config(entry.name)
        assert built.num_labels == row["num_classes"] and built.num_prior_classes == row["backbone_num_cls"]
        kinds = {"SWSeMaskBlock": "windowed", "SeMaskBlock": "global"}
        assert built.semantic_layer_types == [kinds[k] for k in row["semantic_layer_per_stage"]]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_preset_parameter_count(entry):
    with torch.device("meta"):
        model = zoo.build_model(entry.name)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    # the README rounds to whole millions (its Cityscapes-L row repeats the 150-class count: 210.0M here)
    assert params == pytest.approx(entry.paper.params_m, rel=0.01), params


@pytest.mark.slow
@pytest.mark.ci
def test_full_size_tiny_preset_forward():
    """One real full-size forward (SeMask-T, ADE20K) at a non-square size that needs window padding."""
    torch.manual_seed(0)
    model = zoo.build_model("semask-t-fpn-ade20k-512").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 200, 264))
    assert out.logits.shape == (1, 150, 50, 66) and torch.isfinite(out.logits).all()
    assert [tuple(m.shape[-2:]) for m in out.class_prior_maps] == [(50, 66), (25, 33), (13, 17), (7, 9)]
