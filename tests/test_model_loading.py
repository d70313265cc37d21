"""hf_seg.zoo.load, the one model + processor loader: what it accepts, and what it refuses with a one-line message."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_seg import zoo
from hf_seg.modeling.csail import CsailForSemanticSegmentation, tiny_config

PRESET = "csail-ade20k-mobilenetv2dilated-c1-deepsup"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    CsailForSemanticSegmentation(tiny_config(num_labels=5)).save_pretrained(folder)
    zoo.build_processor(PRESET).save_pretrained(folder)
    return folder


def _variant(saved, tmp_path, edit_weights=None, drop=()):
    folder = tmp_path / "variant"
    shutil.copytree(saved, folder)
    for name in drop:
        (folder / name).unlink()
    if edit_weights is not None:
        weights = load_file(folder / "model.safetensors")
        save_file(edit_weights(weights), folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_a_complete_folder_loads_for_inference(saved):
    loaded = zoo.load(str(saved))
    model, processor = loaded
    assert loaded.source == "folder" and not loaded.random_weights and loaded.notes == []
    assert model.config.num_labels == 5 and type(processor).__name__ == "HfSegImageProcessor"


def test_a_folder_without_processor_is_refused_not_given_imagenet_defaults(saved, tmp_path):
    folder = _variant(saved, tmp_path, drop=["preprocessor_config.json"])
    for mode in ("inference", "finetune"):
        with pytest.raises(zoo.ModelLoadError, match="no preprocessor_config.json"):
            zoo.load(str(folder), mode=mode)


def test_missing_classifier_is_refused_for_inference_and_reinitialised_for_finetuning(saved, tmp_path):
    folder = _variant(saved, tmp_path, edit_weights=lambda w: {k: v for k, v in w.items() if "conv_last" not in k})
    with pytest.raises(zoo.ModelLoadError, match=r"lacks \d+ weight tensors .*conv_last"):
        zoo.load(str(folder))
    loaded = zoo.load(str(folder), mode="finetune")
    assert any("newly initialised" in note and "conv_last" in note for note in loaded.notes)


def test_nan_weights_are_refused(saved, tmp_path):
    def poison(weights):
        key = next(k for k, v in weights.items() if v.is_floating_point() and v.dim() > 1)
        weights[key][0] = float("nan")
        return weights

    folder = _variant(saved, tmp_path, edit_weights=poison)
    for mode in ("inference", "finetune"):
        with pytest.raises(zoo.ModelLoadError, match="NaN/inf weights in 1 tensors"):
            zoo.load(str(folder), mode=mode)


def test_finetune_mode_checks_the_classes(saved):
    five = {i: f"class{i}" for i in range(5)}
    loaded = zoo.load(str(saved), mode="finetune", id2label=five)
    assert loaded.model.config.id2label[4] == "class4"
    seven = {i: f"class{i}" for i in range(7)}
    with pytest.raises(zoo.ModelLoadError, match="classifier for 5 classes but the dataset has 7"):
        zoo.load(str(saved), mode="finetune", id2label=seven)
    loaded = zoo.load(str(saved), mode="finetune", id2label=seven, ignore_mismatched_sizes=True)
    assert loaded.model.config.num_labels == 7 and any("re-initialised" in n for n in loaded.notes)


def test_a_preset_is_random_weights_and_says_so():
    with pytest.warns(UserWarning, match="RANDOM weights"):
        loaded = zoo.load(PRESET)
    assert loaded.random_weights and loaded.entry.name == PRESET
    three = {0: "a", 1: "b", 2: "c"}
    loaded = zoo.load(PRESET, mode="finetune", id2label=three, ignore_index=255)
    assert loaded.model.config.num_labels == 3 and loaded.model.config.semantic_loss_ignore_index == 255


def test_a_typo_gets_the_zoos_did_you_mean_without_the_network(monkeypatch, tmp_path):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("a name that is not a hub id must not reach the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    with pytest.raises(zoo.ModelLoadError, match=f"did you mean {PRESET}"):
        zoo.load(PRESET[:-1])
    with pytest.raises(zoo.ModelLoadError, match="^no folder 'runs/no/such/model'$"):
        zoo.load("runs/no/such/model")  # not org/name: a path, never a hub id
    (tmp_path / "runs" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(zoo.ModelLoadError, match="did you mean runs/model"):
        zoo.load("runs/modle")  # org/name-shaped, but its first part is a local folder: a mistyped path


def test_a_hub_id_offline_says_no_network_in_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(zoo.ModelLoadError) as caught:
        zoo.load("hf-seg/no-such-model")
    message = str(caught.value)
    assert message.startswith("no network: ") and "\n" not in message
