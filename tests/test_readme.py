"""Every shell command the README shows runs as written (`make` targets are what CI and the demo run)."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from fixture_utils import ROOT

OUTPUT = ROOT / "readme_output"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_readme_shows_the_two_quick_start_commands():
    commands = readme_commands()
    assert "make demo" in commands and "make test" in commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_every_readme_command_runs():
    commands = [c for c in readme_commands() if not c.startswith("make ")]
    assert commands
    shutil.rmtree(OUTPUT, ignore_errors=True)
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    try:
        for command in commands:
            # the README speaks of the Makefile's .venv; the tests run in whatever environment pytest uses
            argv = [a.replace(".venv/bin/", bin_dir + "/", 1) if a.startswith(".venv/bin/") else a
                    for a in shlex.split(command)]
            result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    finally:
        shutil.rmtree(OUTPUT, ignore_errors=True)
