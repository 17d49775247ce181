"""Validate the Axolotl and LLaMA-Factory exports with the tools' own code (not collected by pytest).

Neither tool can be a dev dependency (see test_tool_schemas.py), so this runs against no-deps installs
in a throwaway folder, and is how the recorded lists in test_tool_schemas.py were checked:

    pip install --no-deps --target /tmp/tools axolotl==0.19.0 llamafactory==0.9.5 \
        omegaconf antlr4-python3-runtime==4.9.3
    DISABLE_VERSION_CHECK=1 PYTHONPATH=src:/tmp/tools python tests/export/check_with_real_tools.py

Axolotl: ``axolotl.utils.schemas.peft.LoraConfig`` (imports pydantic only) validates the LoRA keys.
LLaMA-Factory: ``HfArgumentParser((ModelArguments, DataArguments, TrainingArguments, FinetuningArguments,
GeneratingArguments)).parse_dict(..., allow_extra_keys=False)``, the parser its ``read_args`` feeds;
DISABLE_VERSION_CHECK because it pins transformers<=5.6.0; use_cpu=True because bf16 needs a GPU there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from test_tool_schemas import CASES, _rec  # noqa: E402

from loratune.export import export_config  # noqa: E402


def main() -> int:
    from axolotl.utils.schemas.peft import LoraConfig
    from llamafactory.hparams import (
        DataArguments,
        FinetuningArguments,
        GeneratingArguments,
        ModelArguments,
        TrainingArguments,
    )
    from transformers import HfArgumentParser

    failed = 0
    for label, (model, inputs) in CASES.items():
        rec = _rec(model, **inputs)
        ax = yaml.safe_load(export_config("axolotl", rec, model))
        lf = yaml.safe_load(export_config("llamafactory", rec, model))
        lf |= {"dataset": "alpaca_en_demo", "template": "default", "output_dir": "/tmp/lf-check", "use_cpu": True}
        parser = HfArgumentParser(
            (ModelArguments, DataArguments, TrainingArguments, FinetuningArguments, GeneratingArguments)
        )
        for tool in ("axolotl", "llamafactory"):
            try:
                if tool == "axolotl":
                    LoraConfig(**{k: v for k, v in ax.items() if k in LoraConfig.model_fields})
                else:
                    parser.parse_dict(lf, allow_extra_keys=False)
                print(f"ok    {tool:13} {label}")
            except Exception as e:  # report every case, then fail
                failed += 1
                print(f"FAIL  {tool:13} {label}: {type(e).__name__}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
