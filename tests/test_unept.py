"""UN-EPT: parity with the original code (fixtures), dt_offset targets, tiny-config behaviour, converter, presets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from fixture_utils import ROOT, assert_close, case_id, convert_with_cli, fixture_cases, load_case
from torch import nn

import hf_seg  # noqa: F401  (registers the Auto classes)
from hf_seg.modeling.unept import (
    UnEptConfig, UnEptForSemanticSegmentation, dt_offset_maps, dt_offset_targets, tiny_config,
)
from hf_seg.modeling.unept.dt_offset import DtOffsetTransform
from hf_seg.modeling.unept.deformable_transformer import DecoderSelfAttention
from transformers import AutoModelForSemanticSegmentation

MODEL_CASES = [c for c in fixture_cases("unept") if (c / "config.py").is_file()]
BACKENDS = ["pytorch", "auto"]


def _load(folder, **overrides):
    model = AutoModelForSemanticSegmentation.from_pretrained(folder, **overrides)
    return model.eval()


# ------------------------------------------------------------------------------------------- fixture parity
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", MODEL_CASES, ids=case_id)
def test_fixture_parity(case, backend, converted):
    data = load_case(case)
    expected, meta, labels = data["expected"], data["meta"], data["labels"]
    model = _load(converted(case), msda_backend=backend)
    assert isinstance(model, UnEptForSemanticSegmentation)
    inner = {}  # intermediate tensors the fixtures record, taken from the modules that produce them
    hooks = [model.backbone.register_forward_hook(lambda m, i, o: inner.update(backbone=o[0])),
             model.spatial_branch.register_forward_hook(lambda m, i, o: inner.update(context=o)),
             model.context_branch.encoder.layers[-1].register_forward_hook(lambda m, i, o: inner.update(memory=o)),
             model.context_branch.decoder.layers[-1].register_forward_hook(lambda m, i, o: inner.update(decoded=o))]
    with torch.no_grad():
        out = model(data["input"]["pixel_values"])
        for hook in hooks:
            hook.remove()
        assert_close(out.logits, expected["logits"], "logits")
        assert_close(out.mask_logits, expected["mask_logits"], "mask_logits")
        assert_close(out.direction_logits, expected["dir_logits"], "dir_logits")
        first = 1 if model.config.backbone == "resnet_v1c" else 0  # the original uses ResNet stages 2-4
        for i in range(first, first + model.config.num_feature_levels):
            assert_close(inner["backbone"][i], expected[f"backbone_out_{i}"], f"backbone_out_{i}")
        assert_close(inner["context"], expected["spatial_context"], "spatial_context")
        assert_close(inner["memory"], expected["encoder_memory"], "encoder_memory")
        assert_close(inner["decoded"].transpose(0, 1), expected["decoder_out"], "decoder_out")  # original [HW, B, C]
        if "logits_resized" in expected:
            resized = nn.functional.interpolate(out.logits, size=tuple(meta["input_hw"]), mode="bilinear")
            assert_close(resized, expected["logits_resized"], "logits_resized")

        # the total loss through forward, with the dt_offset targets as the original's loader gives them
        loss = model(data["input"]["pixel_values"], labels=labels["labels"], distance_map=labels["distance_map"],
                     angle_map=labels["angle_map"]).loss
        assert abs(loss.item() - meta["losses"]["loss"]) <= 1e-4 * abs(meta["losses"]["loss"])
        terms = model.compute_losses(out.logits, out.mask_logits, out.direction_logits, labels["labels"],
                                     labels["distance_map"], labels["angle_map"])
        for name in ("seg_ce", "mask_loss", "direction_loss", "refine_ce"):
            reference = meta["losses"][name]
            assert abs(terms[name].item() - reference) <= 1e-4 * abs(reference), name
        assert torch.equal(terms["gt_mask"], expected["loss_gt_mask"])
        assert torch.equal(terms["gt_direction"], expected["loss_gt_direction"])
        assert torch.equal(terms["boundary_offset"], expected["loss_boundary_offset"])
        assert_close(terms["mask_class_weights"], expected["loss_mask_class_weights"], "mask weights")
        assert_close(terms["direction_class_weights"], expected["loss_direction_class_weights"], "direction weights")
        if "loss_refine_logits" in expected:
            assert_close(terms["refine_logits"], expected["loss_refine_logits"], "refine logits")


@pytest.mark.parametrize("case", [c for c in MODEL_CASES if (c / "input.safetensors").is_file()], ids=case_id)
def test_fixture_batch(case, converted):
    """The original's batch-mixing decoder (decoder_self_attention='batch_axis') reproduces ``logits_batch2``; the
    default keeps each image's prediction equal to its single-image prediction."""
    data = load_case(case)
    if "pixel_values_batch2" not in data["input"]:
        pytest.skip("case has no batch input")
    batch = data["input"]["pixel_values_batch2"]
    with torch.no_grad():
        original = _load(converted(case), decoder_self_attention="batch_axis", msda_backend="pytorch")
        assert_close(original(batch).logits, data["expected"]["logits_batch2"], "logits_batch2")
        model = _load(converted(case), msda_backend="pytorch")
        together = model(batch).logits
        for i in range(batch.shape[0]):
            alone = model(batch[i:i + 1]).logits
            assert_close(together[i:i + 1], alone, f"item {i} of the batch vs alone")
        assert_close(together[:1], data["expected"]["logits"], "item 0 vs the fixture's single-image logits")


@pytest.mark.parametrize("case", MODEL_CASES, ids=case_id)
def test_fixture_slide(case, converted):
    data = load_case(case)
    if "slide_seg_logits" not in data["expected"]:
        pytest.skip("case has no slide input")
    from hf_seg import inference
    slide = getattr(inference, "slide_inference", None)
    if slide is None:
        pytest.skip("hf_seg.inference has no slide_inference")
    model = _load(converted(case), msda_backend="pytorch")
    config = model.config
    with torch.no_grad():
        got = slide(model, data["input"]["pixel_values_slide"], crop_size=config.test_crop_size,
                    stride=config.test_stride, num_labels=config.num_labels)
    assert_close(got, data["expected"]["slide_seg_logits"], "slide_seg_logits")


@pytest.mark.parametrize("case", [c for c in fixture_cases("unept") if (c / "labels.safetensors").is_file()],
                         ids=case_id)
def test_dt_offset_generator(case):
    labels = load_case(case)["labels"]
    if "dt_offset_depth" not in labels:
        pytest.skip("no dt_offset maps in this case")
    for i in range(labels["labels"].shape[0]):
        depth, dir_deg = dt_offset_maps(labels["labels"][i])
        assert torch.equal(torch.from_numpy(depth), labels["dt_offset_depth"][i])
        assert torch.equal(torch.from_numpy(dir_deg), labels["dt_offset_dir_deg"][i])
    distance, angle = dt_offset_targets(labels["labels"])
    assert torch.equal(distance, labels["distance_map"]) and torch.equal(angle, labels["angle_map"])
    sample = DtOffsetTransform()({"labels": labels["labels"][0]})
    assert torch.equal(sample["distance_map"], labels["distance_map"][0])
    assert torch.equal(sample["angle_map"], labels["angle_map"][0])


# ------------------------------------------------------------------------------------------------ tiny model
def tiny_model(backbone="resnet_v1c", **overrides):
    torch.manual_seed(0)
    model = UnEptForSemanticSegmentation(tiny_config(backbone, **overrides)).eval()
    with torch.no_grad():  # BN statistics away from the identity so that every module matters
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        model.query_embed.weight.normal_()
    return model


def tiny_labels(batch=2, size=(32, 32)):
    torch.manual_seed(1)
    labels = torch.randint(0, 5, (batch, size[0] // 8, size[1] // 8))
    labels = labels.repeat_interleave(8, 1).repeat_interleave(8, 2)
    labels[:, :4, :4] = 255
    return labels


def test_loss_targets_derived_from_labels():
    """Without distance_map/angle_map the targets are made from the labels with the dt_offset generator."""
    model = tiny_model()
    x, labels = torch.randn(2, 3, 32, 32), tiny_labels()
    distance, angle = dt_offset_targets(labels)
    with torch.no_grad():
        explicit = model(x, labels=labels, distance_map=distance[:, None], angle_map=angle[:, None]).loss
        derived = model(x, labels=labels).loss
    assert torch.allclose(explicit, derived)


@pytest.mark.parametrize("backbone", ["resnet_v1c", "deit"])
def test_default_is_per_image_and_any_size(backbone):
    model = tiny_model(backbone)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        together = model(x).logits
        for i in range(3):
            assert torch.allclose(together[i:i + 1], model(x[i:i + 1]).logits, atol=1e-5)
        # whole-image inference at a size whose stride-8 grid differs from the training layout
        other = model(torch.randn(1, 3, 48, 40))
    assert other.logits.shape == (1, 5, 6, 5)


def test_batch_axis_mode_is_the_originals_multihead_attention():
    """``batch_axis`` = the original's call: a [B, HW, C] tensor into a sequence-first nn.MultiheadAttention."""
    config = tiny_config(decoder_self_attention="batch_axis")
    torch.manual_seed(0)
    ours = DecoderSelfAttention(config).eval()
    nn.init.normal_(ours.in_proj_weight, std=0.3)
    nn.init.normal_(ours.in_proj_bias, std=0.3)
    reference = nn.MultiheadAttention(config.hidden_size, config.num_attention_heads).eval()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(3, 10, config.hidden_size)
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x, x, x)[0], atol=1e-5)
        ours.mode = "per_image"  # for one image the original reduces to out_proj(v_proj(x))
        assert torch.allclose(ours(x[:1]), reference(x[:1], x[:1], x[:1])[0], atol=1e-5)
    model = tiny_model(decoder_self_attention="batch_axis")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(x).logits[:1], model(x[:1]).logits, atol=1e-4)


def test_original_layout_needs_the_training_grid():
    model = tiny_model(decoder_layout="original", query_layout=[2, 8])
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 64)).logits.shape == (1, 5, 2, 8)
        with pytest.raises(ValueError, match="num_queries"):
            model(torch.randn(1, 3, 48, 40))


def test_spatial_self_attention_and_refinement_output():
    model = tiny_model(decoder_self_attention="spatial", refine_inference=True)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.refined_logits.shape == (2, 5, 32, 32) and torch.isfinite(out.refined_logits).all()


def test_config_refusals():
    with pytest.raises(ValueError, match="query_layout"):
        UnEptConfig(num_queries=30, query_layout=[4, 4])
    with pytest.raises(ValueError, match="not a square"):
        UnEptConfig(num_queries=32)
    with pytest.raises(ValueError, match="decoder_self_attention"):
        UnEptConfig(decoder_self_attention="batch")
    with pytest.raises(ValueError, match="msda_backend"):
        UnEptConfig(msda_backend="cuda")
    with pytest.raises(ValueError, match="feature maps"):
        UnEptConfig(backbone="deit", deit_depth=8)


@pytest.mark.parametrize("style", ["pytorch", "caffe"])
@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_v1c_geometry(style, depth):
    """Stage strides/dilations are set the mmseg way (stride on the 3x3 or 1x1 conv, contract_dilation)."""
    from hf_seg.modeling.unept.backbones import ResNetV1cBackbone

    config = tiny_config(resnet_depth=depth, strides=[1, 2, 2, 1], dilations=[1, 1, 1, 4], contract_dilation=False,
                         resnet_style=style)
    backbone = ResNetV1cBackbone(config).eval()
    with torch.no_grad():
        feats, _ = backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 4]
    assert [f.shape[1] for f in feats] == [4 * 2**i * (1 if depth == 18 else 4) for i in range(4)]
    layer4 = backbone.body.layer4
    dilated = layer4[0].conv1 if depth == 18 else layer4[0].conv2
    assert dilated.dilation == (4, 4)  # contract_dilation=False: the first block is dilated too
    strided = backbone.body.layer2[0].conv1 if depth == 18 or style == "caffe" else backbone.body.layer2[0].conv2
    assert strided.stride == (2, 2)
    contracted = ResNetV1cBackbone(tiny_config(resnet_depth=depth, dilations=[1, 1, 1, 4]))
    first = contracted.body.layer4[0].conv1 if depth == 18 else contracted.body.layer4[0].conv2
    assert first.dilation == (2, 2)


def test_released_geometry_is_timms_output_stride_8():
    """The released ResNetV1c (Bottleneck, strides 1-2-1-1, dilations 1-1-2-4, contracted) is timm's output_stride=8
    as built by timm.create_model alone, and equals the stage-by-stage mmseg construction weight for weight."""
    from hf_seg.modeling.unept.backbones import ResNetV1cBackbone, timm_output_stride

    config = tiny_config(resnet_depth=50)
    assert timm_output_stride(config) == 8
    assert timm_output_stride(tiny_config(resnet_depth=50, contract_dilation=False)) is None
    assert timm_output_stride(tiny_config(resnet_depth=18)) is None  # BasicBlocks dilate differently in timm
    timm_built = ResNetV1cBackbone(config).eval()
    from hf_seg.modeling.unept import backbones

    original = backbones.timm_output_stride
    backbones.timm_output_stride = lambda _config: None
    try:
        stage_built = ResNetV1cBackbone(config).eval()
    finally:
        backbones.timm_output_stride = original
    stage_built.load_state_dict(timm_built.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(timm_built(x)[1], stage_built(x)[1]):
            assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------ converter
def _edited_checkpoint(case, tmp_path, edit):
    state = torch.load(case / "checkpoint.pth", map_location="cpu", weights_only=False)["state_dict"]
    edit(state)
    path = tmp_path / "edited.pth"
    torch.save({"state_dict": state}, path)
    return path


@pytest.mark.parametrize("edit, key", [
    (lambda s: s.__setitem__("context_branch.extra.weight", torch.zeros(1)), "context_branch.extra.weight"),
    (lambda s: s.pop("cls.bias"), "classifier.bias"),
])
def test_converter_refuses_mismatched_checkpoints(tmp_path, edit, key):
    case = MODEL_CASES[0]
    result = convert_with_cli(case, tmp_path / "out", checkpoints=[str(_edited_checkpoint(case, tmp_path, edit))])
    assert result.returncode != 0
    assert key in result.stderr


def test_converter_output_config_and_processor(converted):
    case = MODEL_CASES[0]
    folder = converted(case)
    config = json.loads((folder / "config.json").read_text())
    meta = json.loads((case / "meta.json").read_text())
    assert config["model_type"] == "hfseg_unept" and len(config["id2label"]) == meta["num_classes"]
    assert config["query_layout"] == meta["query_layout_hw"]
    square = meta["query_layout_hw"][0] == meta["query_layout_hw"][1]
    assert config["decoder_layout"] == ("resize" if square else "original")
    assert config["decoder_self_attention"] == "per_image" and config["test_mode"] == "slide"
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor["resize_mode"] == "keep_ratio" and processor["do_rescale"] is False


def test_cli_rejects_unknown_model_type(tmp_path):
    config = tmp_path / "config.py"
    config.write_text("model = dict(type='NotUNEPT')\n")
    cmd = [sys.executable, str(ROOT / "scripts" / "convert_original.py"), "--config", str(config),
           "--checkpoint", str(MODEL_CASES[0] / "checkpoint.pth"), "--output", str(tmp_path / "o"), "--family",
           "unept"]
    assert subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).returncode != 0


# -------------------------------------------------------------------------------------------------- presets
# full-size parameter counts of the original code (shared/notes/perf-anchors.md, 150 classes)
ORIGINAL_PARAMS_M = {"unept-res50-ade20k-480": 32.36, "unept-deit-ade20k-480": 94.84}


def test_presets_build_and_parameter_counts():
    from hf_seg.zoo import build_config, build_model, build_processor, list_models

    entries = list_models("unept")
    assert len(entries) == 3
    for entry in entries:
        config = build_config(entry.name)
        assert config.model_type == "hfseg_unept" and config.test_mode == "slide"
        assert build_processor(entry.name).resize_mode == "keep_ratio"
        with torch.device("meta"):
            model = build_model(entry.name)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        if entry.name in ORIGINAL_PARAMS_M:
            assert abs(params - ORIGINAL_PARAMS_M[entry.name]) < 0.01, (entry.name, params)
