"""scripts/release.py: convert a zoo row, refuse another row's checkpoint, verify against the original, write the hub
folder with its card, push only on request.

Two kinds of originals: a CSAIL model built live with the original code (mit_semseg) at the full size of a released
row, and every parity fixture of the families (their stored input/expected logits) released as a one-off row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import hf_seg  # noqa: F401
from hf_seg import model_cards as mc
from hf_seg import release as rel
from hf_seg.conversion import convert_original, find_converter, read_config
from hf_seg.zoo import PaperResult, ZooEntry, get_entry, list_models

import csail_reference
from fixture_utils import fixture_cases

ROOT = Path(__file__).resolve().parents[1]
ROW = "csail-ade20k-mobilenetv2dilated-c1-deepsup"
OTHER_ROW = "csail-ade20k-resnet18dilated-c1-deepsup"
HUB_FILES = {"config.json", "model.safetensors", "preprocessor_config.json", "conversion_report.json", "parity.json",
             "README.md"}

needs_original = pytest.mark.skipif(not csail_reference.available(), reason="mit-semseg (the original CSAIL code) "
                                    "is not installed")


@pytest.fixture(scope="module")
def csail_original():
    """The original MobileNetV2dilated + C1_deepsup at full size (the row's architecture), random weights."""
    return csail_reference.Reference("mobilenetv2dilated", "c1_deepsup", fc_dim=320, num_class=150, seed=3,
                                     input_hw=(64, 64))


@pytest.fixture(scope="module")
def stored_outputs(csail_original, tmp_path_factory):
    folder = tmp_path_factory.mktemp("stored")
    save_file({"pixel_values": csail_original.pixel_values.contiguous()}, str(folder / "input.safetensors"))
    save_file({"logits": csail_original.logits().contiguous()}, str(folder / "expected.safetensors"))
    return folder / "input.safetensors", folder / "expected.safetensors"


def _args(ref, output, row=ROW, *extra):
    return ["--row", row, "--original-checkpoint", *map(str, ref.checkpoints), "--original-config",
            str(ref.config_path), "--output", str(output), *map(str, extra)]


def _card(path: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(path)


@needs_original
def test_dry_run_script_recomputes_with_the_original_code(csail_original, tmp_path):
    out = tmp_path / "hub"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "release.py"), *_args(csail_original, out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dry run" in proc.stdout and f"huggingface.co/hf-seg/{ROW}" in proc.stdout
    assert {p.name for p in out.iterdir()} == HUB_FILES
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and "mit_semseg" in parity["method"] and parity["max_abs_diff"] <= parity["tolerance"]
    card = _card(out / "README.md")
    assert card.data.model_name == ROW
    assert "Release verification of these weights (passed)" in card.text
    assert mc.NOT_MEASURED in card.text
    # the folder loads with the Auto classes and reproduces the original
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    model = AutoModelForSemanticSegmentation.from_pretrained(out).eval()
    AutoImageProcessor.from_pretrained(out)
    with torch.no_grad():
        logits = model(pixel_values=csail_original.pixel_values).logits
    expected = csail_original.logits()
    assert (logits - expected).abs().max() <= 1e-4 * expected.abs().max()
    report = json.loads((out / "conversion_report.json").read_text())
    assert report["zoo_row"] == ROW and report["original_checkpoint_urls"] == list(get_entry(ROW).checkpoint_urls)
    assert all("/" not in name for name in report["original_checkpoints"])  # no local paths on the hub


@needs_original
def test_stored_outputs_and_eval_json(csail_original, stored_outputs, tmp_path, capsys):
    input_path, expected_path = stored_outputs
    eval_json = tmp_path / "eval.json"
    eval_json.write_text(json.dumps({"mean_iou": 0.3312, "overall_accuracy": 0.75, "dataset": "ade20k",
                                     "model": str(tmp_path / "models" / "mine"),
                                     "command": f"scripts/evaluate.py --model {tmp_path}/models/mine"}))
    out = tmp_path / "hub"
    assert rel.main(_args(csail_original, out, ROW, "--expected", expected_path, "--input", input_path,
                          "--eval-json", eval_json)) == 0
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and "stored original outputs" in parity["method"]
    assert parity["input_shape"] == list(csail_original.pixel_values.shape)
    published = (out / "eval-0.json").read_text()
    assert str(tmp_path) not in published and json.loads(published)["model"] == "mine"
    card = _card(out / "README.md")
    ours = {r.metric_name: r.metric_value for r in card.data.eval_results if r.source_name == mc.REPRODUCTION_SOURCE}
    assert ours["mIoU (single-scale, hf_seg)"] == 33.12
    assert "dry run" in capsys.readouterr().out


def test_eval_json_loses_local_paths_before_it_is_published():
    record = {"model": "/home/me/models/setr-x/", "dataset": "~/data/ADEChallengeData2016", "split": "validation",
              "command": "scripts/evaluate.py --model=/home/me/models/setr-x --dataset C:\\data\\ade --stride 341",
              "hub": "https://huggingface.co/hf-seg/setr-x", "relative": "runs/setr/eval.json", "ratio": "512/1024",
              "nested": [{"path": "/tmp/a b/c.png"}], "mean_iou": 0.5}
    clean = rel.without_local_paths(record)
    assert clean == {"model": "setr-x", "dataset": "ADEChallengeData2016", "split": "validation",
                     "command": "scripts/evaluate.py --model=setr-x --dataset ade --stride 341",
                     "hub": "https://huggingface.co/hf-seg/setr-x", "relative": "runs/setr/eval.json",
                     "ratio": "512/1024", "nested": [{"path": "a b/c.png"}], "mean_iou": 0.5}
    assert record["model"] == "/home/me/models/setr-x/"  # the input is not changed


@needs_original
def test_refuses_a_checkpoint_of_another_row(csail_original, tmp_path, capsys):
    out = tmp_path / "hub"
    assert rel.main(_args(csail_original, out, OTHER_ROW)) == 2
    err = capsys.readouterr().err
    assert f"not the architecture of {OTHER_ROW}" in err and "encoder" in err and "mobilenetv2dilated" in err
    assert not out.exists()  # nothing written
    other_family = next((e.name for e in list_models() if e.family != "csail"), None)
    if other_family:
        assert rel.main(_args(csail_original, out, other_family)) == 2
        assert "not" in capsys.readouterr().err
    assert rel.main(_args(csail_original, out, "no-such-row")) == 2
    assert "no zoo model" in capsys.readouterr().err


@needs_original
def test_refuses_failed_parity_and_missing_evidence(csail_original, stored_outputs, tmp_path, monkeypatch, capsys):
    input_path, expected_path = stored_outputs
    wrong = tmp_path / "wrong.safetensors"
    logits = csail_original.logits().clone()
    logits[0, 0, 0, 0] += 1e-2 * logits.abs().max()
    save_file({"logits": logits.contiguous()}, str(wrong))
    out = tmp_path / "hub"
    assert rel.main(_args(csail_original, out, ROW, "--expected", wrong, "--input", input_path)) == 2
    assert "parity check failed" in capsys.readouterr().err and not out.exists()
    assert rel.main(_args(csail_original, out, ROW, "--expected", expected_path)) == 2
    assert "--expected needs --input" in capsys.readouterr().err

    monkeypatch.setattr(rel, "original_reference", lambda family: None)
    assert rel.main(_args(csail_original, out, ROW)) == 2
    assert "no parity evidence" in capsys.readouterr().err
    assert rel.main(_args(csail_original, out, ROW, "--no-verify")) == 0
    assert not (out / "parity.json").exists()
    assert "not yet recorded" in (out / "README.md").read_text()
    # a second release into the same folder needs --overwrite
    assert rel.main(_args(csail_original, out, ROW, "--no-verify")) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert rel.main(_args(csail_original, out, ROW, "--no-verify", "--overwrite")) == 0


@needs_original
def test_push_uploads_the_folder(csail_original, stored_outputs, tmp_path):
    input_path, expected_path = stored_outputs
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, folder_path, repo_id, **kwargs):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    out = tmp_path / "hub"
    result = rel.release(ROW, csail_original.checkpoints, csail_original.config_path, out, expected=expected_path,
                         input_path=input_path, push=True, repo_id="someone/test-release", api=FakeApi())
    assert result.pushed_url == "https://huggingface.co/someone/test-release"
    assert calls[0][:2] == ("create_repo", "someone/test-release") and calls[0][2]["exist_ok"]
    assert calls[1] == ("upload_folder", "someone/test-release", sorted(HUB_FILES))
    # the default is a dry run: nothing is pushed
    dry = rel.release(ROW, csail_original.checkpoints, csail_original.config_path, tmp_path / "dry",
                      expected=expected_path, input_path=input_path, api=FakeApi())
    assert dry.pushed_url is None and len(calls) == 2


# ---------------------------------------------------------------------------------------------------------------
# the families' parity fixtures, released as one-off rows with their stored input/expected logits
# ---------------------------------------------------------------------------------------------------------------

FIXTURE_FOLDERS = ("csail", "setr", "regproxy", "semask", "unept")


def _releasable(case: Path) -> bool:
    config = next((p for p in (case / "config.py", case / "config.yaml") if p.is_file()), None)
    return bool(config and list(case.glob("*.pth")) and (case / "input.safetensors").is_file()
                and (case / "expected.safetensors").is_file())


CASES = [case for folder in FIXTURE_FOLDERS for case in fixture_cases(folder) if _releasable(case)]


def _fixture_entry(case: Path, model) -> ZooEntry:
    from transformers import PretrainedConfig

    config = model.config.to_dict()
    skip = set(PretrainedConfig().to_dict()) | {"id2label", "label2id", "model_type", "transformers_version"}
    arch = {k: v for k, v in config.items() if k not in skip}
    arch["num_labels"] = model.config.num_labels
    return ZooEntry(name=f"fixture-{case.name}", family=find_converter(read_config(_config(case))).family,
                    dataset="fixture", description=f"parity fixture {case.name}", config=arch, processor={},
                    crop_size=(64, 64), paper=PaperResult())


def _config(case: Path) -> Path:
    return next(p for p in (case / "config.py", case / "config.yaml") if p.is_file())


@pytest.mark.skipif(not CASES, reason="no parity fixture with input/expected logits")
@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}-{c.name}" for c in CASES])
def test_release_dry_run_on_a_parity_fixture(case, tmp_path):
    checkpoints = sorted(case.glob("*.pth"))
    model, _, _ = convert_original(_config(case), checkpoints)
    entry = _fixture_entry(case, model)
    out = tmp_path / "hub"
    result = rel.release(entry, checkpoints, _config(case), out, expected=case / "expected.safetensors",
                         input_path=case / "input.safetensors")
    assert result.parity["passed"], result.parity
    assert result.pushed_url is None
    assert {p.name for p in out.iterdir()} == HUB_FILES
    assert _card(out / "README.md").data.model_name == entry.name
    # a full-size row of the same family is another architecture
    rows = list_models(entry.family)
    if rows:
        with pytest.raises(rel.ReleaseError, match="not the architecture"):
            rel.release(rows[0], checkpoints, _config(case), tmp_path / "refused", expected=case / "expected.safetensors",
                        input_path=case / "input.safetensors")
        assert not (tmp_path / "refused").exists()
