"""The hf-seg command line: help without heavy imports, one-line errors for mistyped names, no network needed."""

import configparser
import os
import subprocess
import sys
import time

import pytest
from fixture_utils import ROOT

from hf_seg.cli import COMMANDS, main

ADE_IMAGE = ROOT / "tests" / "data" / "ade20k" / "images" / "validation" / "ADE_val_00000001.jpg"
PRESET = "csail-ade20k-mobilenetv2dilated-c1-deepsup"
CAMVID = ROOT / "demo_data" / "camvid"
# the console script exactly as setup.cfg declares it, plus what it imported when it finished
_PROBE = """
import atexit, importlib, sys
module, function = sys.argv.pop(1).split(":")
atexit.register(lambda: print("IMPORTED", *sorted(m for m in ("torch", "transformers", "timm", "hf_seg.predict")
                                                    if m in sys.modules),
                              file=sys.stderr))
sys.exit(getattr(importlib.import_module(module), function)())
"""


def _entry_point() -> str:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = dict(line.split("=", 1) for line in config["options.entry_points"]["console_scripts"].splitlines()
                   if "=" in line and not line.strip().startswith("#"))
    return scripts["hf-seg "].strip() if "hf-seg " in scripts else scripts["hf-seg"].strip()


def _console(*argv, env=None):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _PROBE, _entry_point(), *argv], capture_output=True, text=True,
                            cwd=ROOT, env=environment, timeout=120)
    imported = next(line for line in result.stderr.splitlines() if line.startswith("IMPORTED")).split()[1:]
    return result, imported, time.perf_counter() - start


def test_help_and_version_need_neither_torch_nor_transformers():
    result, imported, seconds = _console("--help")
    assert result.returncode == 0 and all(name in result.stdout for name in COMMANDS)
    assert imported == []
    assert seconds < 10, f"hf-seg --help took {seconds:.1f} s"  # a guard on a shared machine, not a speed claim
    result, imported, _ = _console("--version")
    assert result.returncode == 0 and result.stdout.startswith("hf-seg ") and imported == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_names_its_program_without_importing_torch(command):
    result, imported, _ = _console(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: hf-seg {command} ")
    assert "torch" not in imported  # finetune's help reads its dataclass through transformers' HfArgumentParser


def test_finetune_help_names_real_trainer_flags():
    from transformers import TrainingArguments

    from hf_seg.training.arguments import COMMON_TRAINER_FLAGS

    fields = set(TrainingArguments.__dataclass_fields__)
    assert all(flag[2:].replace("-", "_") in fields for flag in COMMON_TRAINER_FLAGS)


def test_unknown_command_and_family_are_errors(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["modles"])
    assert stop.value.code == 2 and "did you mean 'models'" in capsys.readouterr().err
    assert main(["models", "--family", "setrr"]) == 2
    err = capsys.readouterr().err
    assert "unknown family 'setrr'" in err and "did you mean setr?" in err
    # convert's --family too: refused before any file is read
    assert main(["convert", "--config", "none.py", "--checkpoint", "none.pth", "--output", "unused",
                 "--family", "semaks"]) == 2
    assert capsys.readouterr().err.startswith("hf-seg convert: error: unknown family 'semaks'; did you mean semask?")


def test_a_mistyped_model_gets_did_you_mean_without_the_network(tmp_path, capsys, monkeypatch):
    # an unreachable endpoint as well as offline mode: the name must not be looked up on the hub at all
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.perf_counter()
    status = main(["predict", str(ADE_IMAGE), "--model", PRESET[:-1], "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert status == 2 and time.perf_counter() - start < 60
    assert err.count("\n") == 1 and err.startswith("hf-seg predict: error: ") and f"did you mean {PRESET}" in err


def test_the_console_script_answers_a_mistyped_model_before_loading_the_command(tmp_path):
    result, imported, _ = _console("predict", str(ADE_IMAGE), "--model", PRESET[:-1], "--out", str(tmp_path / "o.png"),
                                   env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    # answered before the command's own code (and timm) is imported; the zoo's rows still come with the families'
    # configs, which import transformers
    assert result.returncode == 2 and "hf_seg.predict" not in imported and "timm" not in imported
    assert result.stderr.splitlines()[0].startswith(f"hf-seg predict: error: {PRESET[:-1]!r} is not a folder")
    assert f"did you mean {PRESET}" in result.stderr
    # finetune parses its own arguments: the same answer, and no output folder is made
    result, imported, _ = _console("finetune", "--model", PRESET[:-1], "--dataset", str(CAMVID), "--output-dir",
                                   str(tmp_path / "run"), env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert result.returncode == 2 and "hf_seg.predict" not in imported and "timm" not in imported
    assert result.stderr.startswith(f"hf-seg finetune: error: {PRESET[:-1]!r} is not a folder")
    assert not (tmp_path / "run").exists()


def test_a_hub_id_offline_and_a_mistyped_dataset_fail_in_one_line(tmp_path, capsys):
    out = str(tmp_path / "o.png")
    assert main(["predict", str(ADE_IMAGE), "--model", "hf-seg/not-downloaded", "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-seg predict: error: no network: ") and err.count("\n") == 1
    with pytest.warns(UserWarning, match="RANDOM weights"):  # a zoo preset's random weights are said out loud
        assert main(["evaluate", "--model", PRESET, "--dataset", "demo_data/camvd", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == "hf-seg evaluate: error: no dataset folder 'demo_data/camvd'; did you mean demo_data/camvid?\n"


def test_a_folder_without_classifier_weights_is_refused_by_predict(tmp_path, capsys):
    import torch
    from safetensors.torch import load_file, save_file

    from hf_seg import zoo
    from hf_seg.modeling.csail import CsailForSemanticSegmentation, tiny_config

    folder = tmp_path / "model"
    torch.manual_seed(0)
    CsailForSemanticSegmentation(tiny_config(num_labels=5)).save_pretrained(folder)
    zoo.build_processor(PRESET).save_pretrained(folder)
    weights = {k: v for k, v in load_file(folder / "model.safetensors").items() if "conv_last" not in k}
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    assert main(["predict", str(ADE_IMAGE), "--model", str(folder), "--out", str(tmp_path / "o.png")]) == 2
    assert "weight tensors that would be randomly initialised" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
