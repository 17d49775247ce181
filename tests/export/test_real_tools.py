"""The Axolotl and LLaMA-Factory exports validated by the tools' own schema code, not only recorded lists.

``make install`` puts no-deps copies of both tools in ``.venv/tools`` (they pin torch/transformers
versions of their own, so they cannot be ordinary dependencies); ``check_with_real_tools.py`` imports
Axolotl's pydantic ``LoraConfig`` and LLaMA-Factory's ``HfArgumentParser`` dataclasses from there and
feeds them every export case. A missing ``.venv/tools`` is a failure, not a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".venv" / "tools"


def test_exports_pass_the_tools_own_validation() -> None:
    assert (TOOLS / "axolotl").is_dir() and (TOOLS / "llamafactory").is_dir(), (
        f"{TOOLS} lacks axolotl/llamafactory: run `make install`"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{TOOLS}", "DISABLE_VERSION_CHECK": "1"}
    p = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("check_with_real_tools.py"))],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    ok = [line for line in p.stdout.splitlines() if line.startswith("ok ")]
    assert len(ok) >= 10 and {"axolotl", "llamafactory"} <= {line.split()[1] for line in ok}
