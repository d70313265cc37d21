"""The model contract of every family, checked once by one tester (transformers' ``ModelTesterMixin`` idea) on every
variant of :mod:`model_variants`: outputs and their tuple form, hidden states and attentions (on the autograd
graph), eval determinism and batching equivalence, save/load (safetensors only, bfloat16), every loading path
keeping every tensor bit for bit, initialisation of every tensor (transformers' ``test_can_init_all_missing_weights``
and ``test_init_weights_can_init_buffers``, run here), new classifiers, gradient checkpointing, a training step,
eager vs SDPA attention, config round trip and refusals, ``torch.export`` / ``torch.compile`` and ONNX.

Family test files keep only what is their own (parity with the originals, quirks).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import hf_seg  # noqa: F401  (registers the Auto classes)
from model_variants import LIGHT, PER_FAMILY, VARIANTS, ids, params
from hf_seg.families import family_module, get_family
from transformers import AutoConfig, AutoModelForSemanticSegmentation
from transformers import initialization as hf_init

pytestmark = pytest.mark.usefixtures("single_thread")


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return (a.double() - b.double()).abs().max().item() <= rel * max(b.double().abs().max().item(), 1e-6)


def _forward(model, variant, batch=2, seed=0, labels=False, **kwargs):
    return model(**variant.inputs(batch, seed, labels), **kwargs)


# ------------------------------------------------------------------------------------------------ outputs
@pytest.mark.parametrize("variant", params(VARIANTS))
def test_output_contract(variant):
    """logits shape; loss; hidden states (count, batch); attentions or a clear refusal; the tuple form's order."""
    model = variant.model().eval()
    config = model.config
    with torch.no_grad():
        out = _forward(model, variant, labels=True, output_hidden_states=True,
                       output_attentions=variant.has_attention)
        as_tuple = _forward(model, variant, labels=True, output_hidden_states=True,
                            output_attentions=variant.has_attention, return_dict=False)
        plain = _forward(model, variant)
    assert out.logits.dim() == 4 and out.logits.shape[:2] == (2, config.num_labels)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert plain.loss is None and plain.hidden_states is None and plain.attentions is None
    assert isinstance(out.hidden_states, tuple) and len(out.hidden_states) == variant.num_hidden_states
    assert all(h.shape[0] == 2 for h in out.hidden_states)
    # token sequences [B, N, C] (ViT families) or maps [B, C, H, W] no larger than the input (hierarchical / CNN)
    assert all(h.dim() == 3 or (h.dim() == 4 and h.shape[-2] <= variant.size[0] and h.shape[-1] <= variant.size[1])
               for h in out.hidden_states), [tuple(h.shape) for h in out.hidden_states]
    assert type(model)._supports_sdpa is variant.has_attention  # declared honestly: SDPA only where there is attention
    if variant.has_attention:
        assert out.attentions and all(torch.isfinite(a).all() for a in out.attentions)
        assert all(_close(a.sum(-1) if a.dim() == 4 else a.sum((-1, -2)), torch.ones(())) for a in out.attentions)
    else:
        assert out.attentions is None
        with pytest.raises(ValueError, match="no attention"):
            _forward(model, variant, output_attentions=True)
    # return_dict=False: loss, logits, hidden_states, attentions (None ones left out), then the family's extras
    expected = out.to_tuple()
    assert len(as_tuple) == len(expected) and torch.equal(as_tuple[0], out.loss) and torch.equal(as_tuple[1], out.logits)
    assert len(as_tuple[2]) == len(out.hidden_states)
    if variant.has_attention:
        assert len(as_tuple[3]) == len(out.attentions)
    assert list(out.keys())[:2] == ["loss", "logits"]
    with torch.no_grad(), pytest.raises(ValueError, match="outside"):  # label ids the loss cannot take
        model(pixel_values=out.logits.new_zeros(1, 3, *variant.size),
              labels=torch.full((1, *variant.size), config.num_labels, dtype=torch.long))
    # a config-level switch works like the argument
    config.output_hidden_states = True
    with torch.no_grad():
        assert len(_forward(model, variant).hidden_states) == variant.num_hidden_states


@pytest.mark.parametrize("variant", LIGHT, ids=ids(LIGHT))
def test_hidden_states_and_attentions_are_on_the_autograd_graph(variant):
    """The hidden states (and attention maps) returned are tensors the model went on to use: a loss on the logits
    reaches them (transformers' ``test_retain_grad_hidden_states_attentions``)."""
    model = variant.model().train()
    out = _forward(model, variant, labels=True, output_hidden_states=True, output_attentions=variant.has_attention)
    watched = [out.hidden_states[0], out.hidden_states[-1]]
    if variant.has_attention:
        watched += [out.attentions[0], out.attentions[-1]]
    for tensor in watched:
        tensor.retain_grad()
    out.loss.backward()
    assert all(t.grad is not None for t in watched)


@pytest.mark.parametrize("variant", LIGHT, ids=ids(LIGHT))
def test_eval_is_deterministic_and_batches_are_independent(variant):
    model = variant.model().eval()
    x = variant.inputs(batch=2)["pixel_values"]
    with torch.no_grad():
        first, second = model(x).logits, model(x).logits
        singles = torch.cat([model(x[:1]).logits, model(x[1:]).logits])
    assert torch.equal(first, second)
    assert _close(singles, first, rel=1e-4)


@pytest.mark.parametrize("variant", [v for v in LIGHT if v.has_attention], ids=ids([v for v in LIGHT if v.has_attention]))
def test_eager_attention_matches_sdpa(variant, tmp_path):
    model = variant.model().eval()
    model.save_pretrained(tmp_path)
    sdpa = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    eager = AutoModelForSemanticSegmentation.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    x = variant.inputs()["pixel_values"]
    with torch.no_grad():
        assert _close(eager(x).logits, sdpa(x).logits, rel=1e-4)
    assert all(getattr(m, "fused_attn", True) for m in sdpa.modules())
    assert not any(getattr(m, "fused_attn", False) for m in eager.modules())
    sdpa.set_attn_implementation("eager")  # switching later works too
    with torch.no_grad():
        assert torch.equal(sdpa(x).logits, eager(x).logits)


# ------------------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("variant", LIGHT, ids=ids(LIGHT))
def test_save_load_round_trip(variant, tmp_path):
    model = variant.model().eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    x = variant.inputs()["pixel_values"]
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)
    half = AutoModelForSemanticSegmentation.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        logits = half(x.to(torch.bfloat16)).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def _perturbed(model: nn.Module, seed: int = 1) -> nn.Module:
    """Every saved parameter and buffer set to values no initialisation would produce."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.dtype.is_floating_point:
                values = torch.rand(tensor.shape, generator=g) * 0.2 + 0.4
                if not name.endswith("running_var"):
                    values = values * torch.where(torch.rand(tensor.shape, generator=g) < 0.5, -1.0, 1.0)
                tensor.copy_(values)
            elif name.endswith("num_batches_tracked"):
                tensor.fill_(int(torch.randint(1, 1000, (), generator=g)))
    return model


@contextlib.contextmanager
def _treated_as_transformers_own(model_class):
    """transformers skips modules whose tensors are all loaded only for custom code; make it treat ours as its
    own, the path where every module goes through ``_init_weights`` again."""
    original = model_class.__dict__.get("is_custom_code")
    model_class.is_custom_code = classmethod(lambda cls: False)
    try:
        yield
    finally:
        if original is None:
            del model_class.is_custom_code
        else:
            model_class.is_custom_code = original


@pytest.fixture(scope="module")
def remote_code_loads(tmp_path_factory):
    """Every per-family variant, perturbed, saved with remote code and loaded by transformers alone in one fresh
    process (hf_seg unimportable): variant name -> (state dict, logits)."""
    from hf_seg.remote_code import save_with_remote_code

    root = tmp_path_factory.mktemp("remote")
    for variant in PER_FAMILY:
        save_with_remote_code(_perturbed(variant.model()).eval(), root / variant.name)
        torch.save(variant.inputs(), root / variant.name / "inputs.pt")
    script = f"""
import sys, torch
sys.modules['hf_seg'] = None
torch.set_num_threads(1)  # as the tests (convolution results depend on the thread count in their last bits)
from transformers import AutoModelForSemanticSegmentation
for name in {[v.name for v in PER_FAMILY]!r}:
    folder = {str(root)!r} + '/' + name
    model = AutoModelForSemanticSegmentation.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith('transformers_modules'), type(model).__module__
    with torch.no_grad():
        logits = model(**torch.load(folder + '/inputs.pt')).logits
    torch.save((model.state_dict(), logits), folder + '/loaded.pt')
"""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HUB_OFFLINE": "1", "HF_HOME": str(root / "hf")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return {v.name: torch.load(root / v.name / "loaded.pt") for v in PER_FAMILY}


@pytest.mark.parametrize("variant", PER_FAMILY, ids=ids(PER_FAMILY))
def test_every_loading_path_keeps_every_tensor(variant, tmp_path, remote_code_loads):
    """A model whose every parameter and buffer was perturbed reloads bit for bit, and predicts the same, through
    from_pretrained, the accelerate (device_map) path, transformers treating the class as its own, and remote code."""
    model = _perturbed(variant.model()).eval()
    model.save_pretrained(tmp_path)
    x = variant.inputs()["pixel_values"]
    with torch.no_grad():
        expected = model(x).logits
    state = model.state_dict()
    cls = type(model)
    loads = {"from_pretrained": lambda: cls.from_pretrained(tmp_path),
             "device_map": lambda: cls.from_pretrained(tmp_path, device_map="cpu")}
    for path, load in loads.items():
        for own in (False, True):
            with _treated_as_transformers_own(cls) if own else contextlib.nullcontext():
                loaded = load().eval()
            with torch.no_grad():
                logits = loaded(x).logits
            where = f"{path}{' (as transformers code)' if own else ''}"
            assert loaded.state_dict().keys() == state.keys(), where
            assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items()), where
            assert torch.equal(logits, expected), where
    remote_state, remote_logits = remote_code_loads[variant.name]
    assert remote_state.keys() == state.keys()
    assert all(torch.equal(remote_state[k], v) for k, v in state.items())
    assert torch.equal(remote_logits, expected)


# ---------------------------------------------------------------------------------------------- init
@contextlib.contextmanager
def _seeded_init():
    """Every random init draws from a freshly seeded generator (transformers' ``seeded_weight_init`` idea): the
    same tensor initialised on two paths gets the same values."""
    originals = dict(hf_init.TORCH_INIT_FUNCTIONS)

    def seeded(function):
        def run(tensor, *args, **kwargs):
            torch.manual_seed(tensor.numel())
            return function(tensor, *args, **kwargs)
        return run

    for name, function in originals.items():
        hf_init.TORCH_INIT_FUNCTIONS[name] = seeded(function)
    try:
        yield
    finally:
        hf_init.TORCH_INIT_FUNCTIONS.update(originals)


@pytest.mark.parametrize("variant", LIGHT, ids=ids(LIGHT))
def test_init_weights_covers_every_tensor(variant):
    """transformers' ``test_can_init_all_missing_weights`` (every tensor initialised by ``_init_weights``, so the
    meta-device path of ``from_pretrained(state_dict={})`` equals ``__init__``) and
    ``test_init_weights_can_init_buffers`` (buffers recomputed on meta-device init), run on our families."""
    cls = get_family(variant.family).model_class
    config = variant.config()
    with _seeded_init():
        from_init = cls(copy.deepcopy(config))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from_empty = cls.from_pretrained(None, config=copy.deepcopy(config), state_dict={})
    assert not [k for k, v in from_empty.state_dict().items() if v.device.type == "meta"]
    different = [k for k, v in from_init.state_dict().items() if not torch.equal(v, from_empty.state_dict()[k])]
    assert not different, f"not initialised by _init_weights: {different[:10]}"
    for name, buffer in from_empty.named_buffers():  # default BatchNorm statistics, not uninitialised memory
        if name.endswith("running_var"):
            assert torch.equal(buffer, torch.ones_like(buffer)), name
        elif name.endswith(("running_mean", "num_batches_tracked")):
            assert not buffer.any(), name

    with hf_init.no_init_weights():
        reference = cls(copy.deepcopy(config))
    with torch.device("meta"):
        on_meta = cls(copy.deepcopy(config))
    on_meta.to_empty(device="cpu")
    on_meta.init_weights()
    ours = dict(on_meta.named_buffers())
    assert not [k for k, v in reference.named_buffers() if not torch.equal(v, ours[k])]


@pytest.mark.parametrize("variant", LIGHT, ids=ids(LIGHT))
def test_new_classifier_for_other_classes_is_initialised(variant, tmp_path):
    """``from_pretrained(..., num_labels=K, ignore_mismatched_sizes=True)``: the resized layers get a proper init
    (finite, spread out, small), everything else is the checkpoint's."""
    model = _perturbed(variant.model()).eval()
    model.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = AutoModelForSemanticSegmentation.from_pretrained(tmp_path, num_labels=3,
                                                                 ignore_mismatched_sizes=True).eval()
    saved = model.state_dict()
    for name, tensor in other.state_dict().items():
        assert torch.isfinite(tensor.float()).all(), name
        if saved[name].shape == tensor.shape:
            assert torch.equal(tensor, saved[name]), name
        elif tensor.dtype.is_floating_point and tensor.dim() > 1:
            assert 0 < tensor.float().std() < 1, (name, tensor.float().std())
    with torch.no_grad():
        logits = other(**variant.inputs()).logits
    assert logits.shape[1] == 3 and torch.isfinite(logits).all()


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("variant", params(VARIANTS))
def test_gradient_checkpointing_recomputes_and_changes_nothing(variant):
    plain = variant.model().train()
    checkpointed = copy.deepcopy(plain)
    assert plain.supports_gradient_checkpointing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecated name is the one Trainer calls
        checkpointed.gradient_checkpointing_enable()
    calls = {}
    for name, module in checkpointed.named_modules():
        module.register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
    inputs = variant.inputs(labels=True)
    losses = []
    for model in (plain, checkpointed):
        torch.manual_seed(0)
        loss = model(**inputs).loss
        loss.backward()
        losses.append(loss)
    assert torch.equal(losses[0], losses[1])
    after_forward = dict(calls)  # the hooks ran during forward and again for every recomputed module
    assert any(count > 1 for count in after_forward.values()), "nothing was recomputed"
    grads = dict(checkpointed.named_parameters())
    for name, param in plain.named_parameters():
        if param.grad is not None:
            assert _close(grads[name].grad, param.grad, rel=1e-5), name
    buffers = dict(checkpointed.named_buffers())  # BatchNorm statistics updated once, not again by the recompute
    assert all(torch.equal(buffers[name], b) for name, b in plain.named_buffers())


@pytest.mark.parametrize("variant", LIGHT, ids=ids(LIGHT))
def test_training_steps_reduce_the_loss(variant):
    model = variant.model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    inputs = variant.inputs(labels=True)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


# ----------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("variant", PER_FAMILY, ids=ids(PER_FAMILY))
def test_config_round_trip_and_test_protocol(variant, tmp_path):
    config = variant.config(test_mode="slide", test_crop_size=[32, 48], test_stride=[16, 24], test_scales=[0.5, 1.0],
                            test_flip=True)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for key in ("test_mode", "test_crop_size", "test_stride", "test_scales", "test_flip", "test_pad_to_crop",
                "test_align_corners", "semantic_loss_ignore_index"):
        assert key in saved, key
    loaded = AutoConfig.from_pretrained(tmp_path)
    loaded._name_or_path = config._name_or_path
    assert type(loaded) is type(config) and loaded.to_dict() == config.to_dict()
    assert type(config).from_dict(config.to_dict()).to_dict() == config.to_dict()
    assert loaded.get_text_config() is loaded  # no attribute transformers would read as a sub-config
    default = variant.config()
    assert (default.test_mode, default.test_flip, default.test_scales) == ("whole", False, None)


REFUSALS = {
    "setr": [dict(patch_size=0), dict(hidden_size=0), dict(num_labels=0), dict(mlp_ratio=0),
             dict(hidden_dropout_prob=2.0), dict(drop_path_rate=-0.1), dict(layer_norm_eps=0), dict(head_channels=-1),
             dict(image_size=0), dict(test_mode="sliding"), dict(test_stride=[0, 4]), dict(test_scales=[])],
    "regionproxy": [dict(patch_size=0), dict(mlp_ratio=0), dict(num_labels=0), dict(region_res=[0, 2]),
                    dict(attention_dropout_prob=1.0), dict(loss_weight=-1.0), dict(head_norm_eps=0)],
    "unept": [dict(dropout=2.0), dict(hidden_size=0), dict(num_points=0), dict(ffn_dim=0), dict(num_labels=0),
              dict(encoder_layers=-1), dict(mask_loss_weight=-1.0), dict(base_channels=0), dict(strides=[1, 0, 1, 1])],
    "semask": [dict(embed_dim=0), dict(mlp_ratio=0), dict(drop_path_rate=2.0), dict(num_labels=0),
               dict(decoder_channels=0), dict(window_size=0), dict(prior_loss_weight=-1.0), dict(ohem_thresh=2.0)],
    "csail": [dict(pool_scales=[]), dict(pool_scales=[0, 2]), dict(deep_sup_scale=-0.4), dict(num_labels=0),
              dict(arch_encoder="resnet34")],
}


@pytest.mark.parametrize("family,kwargs", [(f, k) for f, cases in REFUSALS.items() for k in cases],
                         ids=[f"{f}-{next(iter(k))}" for f, cases in REFUSALS.items() for k in cases])
def test_config_refuses_what_cannot_be_built(family, kwargs):
    field = next(iter(kwargs))
    with pytest.raises(ValueError, match=field):
        family_module(family).tiny_config(**kwargs)


def test_old_csail_configs_still_load(tmp_path):
    """hf_seg <= 0.1 wrote ``encoder`` / ``decoder``; transformers reads ``config.decoder`` as a sub-config, so the
    fields are ``arch_encoder`` / ``arch_decoder`` now and old files are read into them."""
    config = family_module("csail").tiny_config()
    data = config.to_dict()
    data["encoder"], data["decoder"] = data.pop("arch_encoder"), data.pop("arch_decoder")
    (tmp_path / "config.json").write_text(json.dumps(data))
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert (loaded.arch_encoder, loaded.arch_decoder) == (config.arch_encoder, config.arch_decoder)
    assert not hasattr(loaded, "decoder") and not hasattr(loaded, "encoder")


# ------------------------------------------------------------------------------------------------ export
def _logits_only(model):
    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values=pixel_values).logits

    return Logits().eval()


EXPORT_VARIANTS = [v for v in PER_FAMILY] + [next(v for v in VARIANTS if v.name == "setr-hlg")]
# ``ci``: slow checks of which CI still runs one real instance (``-m "not slow or ci"``), so the paths cannot rot
_CI_EXPORT = "semask"


@pytest.mark.slow
@pytest.mark.parametrize("variant", [pytest.param(v, id=v.name, marks=[pytest.mark.ci] if v.name == _CI_EXPORT else [])
                                     for v in EXPORT_VARIANTS])
def test_torch_export(variant):
    model = variant.model().eval()
    x = variant.inputs(batch=1)["pixel_values"]
    with torch.no_grad():
        expected = model(pixel_values=x).logits
        exported = torch.export.export(_logits_only(model), (x,))
        assert _close(exported.module()(x), expected, rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("variant", EXPORT_VARIANTS, ids=ids(EXPORT_VARIANTS))
def test_torch_compile_fullgraph(variant):
    model = variant.model().eval()
    x = variant.inputs(batch=1)["pixel_values"]
    with torch.no_grad():
        expected = model(pixel_values=x).logits
        compiled = torch.compile(model, fullgraph=True)
        assert _close(compiled(pixel_values=x).logits, expected, rel=1e-4)


ONNX_CASES = [(v, None) for v in PER_FAMILY] + [(next(v for v in VARIANTS if v.name == "unept-res"), "compiled")]
# CI exports with the TorchScript exporter (the faster one) a ViT family and UN-EPT with its compiled kernel
_CI_ONNX = {("regionproxy-vit", None), ("unept-res", "compiled")}


def _onnx_params():
    for variant, backend in ONNX_CASES:
        for dynamo in (False, True):
            ci = not dynamo and (variant.name, backend) in _CI_ONNX
            yield pytest.param(variant, backend, dynamo, marks=[pytest.mark.ci] if ci else [],
                               id=f"{variant.name}{f'-msda-{backend}' if backend else ''}-"
                                  f"{'dynamo' if dynamo else 'torchscript'}")


@pytest.mark.slow
@pytest.mark.parametrize("variant,backend,dynamo", list(_onnx_params()))
def test_onnx_export_runs_in_onnxruntime_like_eager(variant, backend, dynamo, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")  # a test extra (setup.cfg); third-party, so it may be absent
    overrides = {"msda_backend": backend} if backend else {}
    model = variant.model(**overrides).eval()
    x = variant.inputs(batch=1)["pixel_values"]
    with torch.no_grad():
        expected = model(pixel_values=x).logits
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings(), torch.no_grad():  # an inference graph
        warnings.simplefilter("ignore")
        torch.onnx.export(_logits_only(model), (x,), str(path), dynamo=dynamo, input_names=["pixel_values"],
                          output_names=["logits"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"pixel_values": x.numpy()})
    assert _close(torch.from_numpy(logits), expected, rel=1e-4)


# one real full-size forward per family (small inputs; the architecture at full width and depth). SeMask's is in its
# own file, CSAIL's full-size encoders run in the tester above (hrnetv2, resnet50 + UPerNet are fixed-width).
FULL_SIZE = ["setr-hlg-small-ade20k", "regionproxy-r26-vit-s32-ade20k-512", "unept-res50-ade20k-480"]


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_forward(name):
    from hf_seg import zoo

    torch.manual_seed(0)
    model = zoo.build_model(name).eval()
    with torch.no_grad():
        out = model(pixel_values=torch.randn(1, 3, 96, 128), output_hidden_states=True)
    assert out.logits.shape[:2] == (1, model.config.num_labels) and torch.isfinite(out.logits).all()
    assert all(torch.isfinite(h).all() for h in out.hidden_states)
