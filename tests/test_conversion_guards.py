"""Conversion is fed untrusted files: the config reader stays within fixed limits, every mistake is a
``ConfigError`` that ``hf-seg convert`` prints as one line, and NaN/inf weights are refused (issue 18)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_seg.cli import main as cli_main
from hf_seg.conversion import ConfigError, ConversionError, convert_original, read_config
from hf_seg.conversion.config_reader import MAX_CONFIG_BYTES

SETR = Path(__file__).resolve().parent / "fixtures" / "setr" / "naive_deit_whole"
CSAIL_YAML = """DATASET:
  num_class: 150
  imgSizes: (300, 375, 450, 525, 600)
  imgMaxSize: 1000
  padding_constant: 8
MODEL:
  arch_encoder: "mobilenetv2dilated"
  arch_decoder: "c1_deepsup"
  fc_dim: 320
"""
# 8 levels of 9 aliases: 9**8 = 43 million strings once expanded (393 bytes)
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefg", "bcdefgh"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------ hostile configs
@pytest.mark.timeout(20)
def test_unbounded_power_fails_fast(tmp_path):
    with pytest.raises(ConfigError, match=r":1: 9\*\*387420489 has about .* bits"):
        read_config(write(tmp_path, "pow.py", "x = 9**9**9\n"))
    assert read_config(write(tmp_path, "ok.py", "x = 2**10\ny = 10**-3\n")) == {"x": 1024, "y": 0.001}


@pytest.mark.timeout(20)
def test_yaml_alias_bomb_fails_fast(tmp_path):
    assert len(ALIAS_BOMB) < 400
    with pytest.raises(ConfigError, match="expands to 54,481,005 values"):
        read_config(write(tmp_path, "bomb.yaml", ALIAS_BOMB))
    # aliases that expand to little are fine
    assert read_config(write(tmp_path, "alias.yaml", "a: &s [1, 2]\nb: *s\n")) == {"a": [1, 2], "b": [1, 2]}


@pytest.mark.timeout(20)
def test_base_must_be_a_small_regular_file(tmp_path):
    with pytest.raises(ConfigError, match="/dev/zero"):
        read_config(write(tmp_path, "zero.py", "_base_ = '/dev/zero'\nx = 1\n"))
    (tmp_path / "zero_link.py").symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="not a regular file"):
        read_config(write(tmp_path, "via_link.py", "_base_ = 'zero_link.py'\n"))
    write(tmp_path, "big.py", "x = 1\n" + "#" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match="bytes"):
        read_config(write(tmp_path, "child.py", "_base_ = 'big.py'\n"))
    write(tmp_path, "base.py", "model = dict(a=1, b=dict(c=2))\n")
    merged = read_config(write(tmp_path, "good.py", "_base_ = ['base.py']\nmodel = dict(b=dict(d=3))\n"))
    assert merged == {"model": {"a": 1, "b": {"c": 2, "d": 3}}}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("text,match", [
    ("x = [0] * 10**10\n", "more than .* values"),
    ("x = 'a' * 10**10\n", "more than .* values"),
    ("a = [0]\n" + "a = [a, a]\n" * 40, "more than .* values"),
    ("a = [0]\n" + "a = [a]\n" * 200, "nested more than"),
    ("x = 2**4000\ny = x * x\n", "bits"),
    ("x = '%*d' % (10**9, 1)\n", "formatting"),
], ids=["list-repeat", "str-repeat", "doubling", "depth", "int-growth", "format-width"])
def test_sequence_repetition_nesting_and_integers_are_bounded(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        read_config(write(tmp_path, "c.py", text))


# ------------------------------------------------------------------------------------------------ ordinary mistakes
@pytest.mark.parametrize("name,text,match", [
    ("missing_base.py", "_base_ = 'nothere.py'\n", "_base_ file 'nothere.py' not found"),
    ("zero.py", "x = 1/0\n", ":1: ZeroDivisionError"),
    ("type.py", "x = 1\ny = 'a' - x\n", ":2: TypeError"),
    ("key.py", "x = dict(a=1)['b']\n", ":1: KeyError"),
    ("syntax.py", "x = (\n", "not valid Python"),
    ("name.py", "x = y\n", "'y' is used before it is assigned"),
    ("call.py", "x = open('/etc/passwd')\n", "expression not allowed"),
    ("import.py", "import os\n", "imports are not allowed"),
    ("base_type.py", "_base_ = 5\n", "_base_ must be"),
    ("cycle.py", "_base_ = 'cycle.py'\n", "circular"),
    ("syntax.yaml", "MODEL: [a, b\n", r"not valid YAML.*syntax\.yaml"),
    ("list.yaml", "- 1\n", "mapping at its top level"),
    ("absent.py", None, "not found"),
])
def test_every_mistake_is_a_config_error(tmp_path, name, text, match):
    path = tmp_path / name if text is None else write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=match):
        read_config(path)


def test_non_utf8_config(tmp_path):
    path = tmp_path / "latin1.py"
    path.write_bytes(b"x = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_config(path)


# ------------------------------------------------------------------------------------------------ the converter
@pytest.mark.timeout(60)
def test_a_giant_depth_is_refused_before_the_model_is_built(tmp_path):
    config = write(tmp_path, "deep.py", (SETR / "config.py").read_text().replace("depth=6", "depth=100000"))
    with pytest.raises(ConversionError, match="larger than the checkpoint"):
        convert_original(config, [SETR / "checkpoint.pth"])
    # a near miss is listed tensor by tensor, also before anything is built for real
    config = write(tmp_path, "seven.py", (SETR / "config.py").read_text().replace("depth=6", "depth=7"))
    with pytest.raises(ConversionError, match=r"missing from the checkpoint: .*blocks\.6\."):
        convert_original(config, [SETR / "checkpoint.pth"])


@pytest.mark.parametrize("name,text,match", [
    ("patch0.py", lambda t: t.replace("patch_size=16", "patch_size=0"), "setr model"),
    ("arch5.yaml", lambda _: CSAIL_YAML.replace('"mobilenetv2dilated"', "5"), "csail model"),
    ("arch_unknown.yaml", lambda _: CSAIL_YAML.replace('"mobilenetv2dilated"', '"nonsense"'), "encoder must be"),
    ("zero.py", lambda t: "x = 1/0\n" + t, "ZeroDivisionError"),
    ("bomb.yaml", lambda _: ALIAS_BOMB, "expands to"),
])
def test_cli_prints_config_mistakes_as_one_line(tmp_path, capsys, name, text, match):
    config = write(tmp_path, name, text((SETR / "config.py").read_text()))
    checkpoints = [SETR / "checkpoint.pth"] * (2 if name.endswith(".yaml") else 1)
    rc = cli_main(["convert", "--config", str(config), "--checkpoint", *map(str, checkpoints),
                   "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("hf-seg convert: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert match in err, err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_nan_or_inf_weights_are_refused_at_conversion(tmp_path):
    import torch

    state = torch.load(SETR / "checkpoint.pth", weights_only=True)
    state = state.get("state_dict", state)
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 4 and "blocks.2" in k)
    state[key] = state[key].clone()
    state[key].view(-1)[:3] = torch.tensor([float("nan"), float("inf"), float("nan")])
    torch.save({"state_dict": state}, tmp_path / "nan.pth")
    with pytest.raises(ConversionError, match=r"NaN or infinite values.*\(2 NaN, 1 inf\)"):
        convert_original(SETR / "config.py", [tmp_path / "nan.pth"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
