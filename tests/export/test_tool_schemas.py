"""Every export checked against the definitions of the tool it targets.

Real code where it installs with the dev extras: PEFT builds ``LoraConfig``/``AdaLoraConfig`` from the
PEFT exports and names the LoraConfig fields Unsloth forwards; transformers' ``Seq2SeqTrainingArguments``
(LLaMA-Factory's ``TrainingArguments`` subclasses it, hparams/training_args.py) owns the training keys of
the LLaMA-Factory export.

Recorded lists, copied from the released source with version and file named, for the rest: none of
these can be a dev dependency. ``pip install axolotl`` (0.19.0) pins torch, transformers==5.16.1, peft,
gradio, wandb, lm_eval, deepspeed-class kernels...; llamafactory 0.9.5 requires transformers<=5.6.0
(its version check refuses ours) and imports torch and omegaconf from ``hparams``; unsloth imports
triton and CUDA kernels at import; torchtune imports torchao. Axolotl's ``schemas/peft.py`` alone imports
only pydantic, so with ``pip install --no-deps axolotl==0.19.0`` (a Makefile step, not a dev extra) its
``LoraConfig`` could run here; ``check_with_real_tools.py`` beside this file does that, and runs
LLaMA-Factory's own ``HfArgumentParser.parse_dict(allow_extra_keys=False)``, against no-deps installs.
"""

import ast
import dataclasses

import pytest
import yaml

from loratune.advise import AdviceInputs, recommend
from loratune.errors import ConfigError
from loratune.export import export_config
from loratune.export.axolotl import AXOLOTL_KEYS
from loratune.export.llamafactory import LLAMAFACTORY_KEYS
from loratune.export.torchtune import BUILDERS, MODEL_KEYS, OPTIMIZER_KEYS, TOP_KEYS
from loratune.export.unsloth import UNSLOTH_LOAD_KEYS, UNSLOTH_PASSTHROUGH_KEYS, UNSLOTH_PEFT_KEYS
from loratune.models import load_anatomy, resolve_source

GiB = 1024**3
STR, INT, FLOAT, BOOL, LIST, DICT = str, int, float, bool, list, dict

# ---------------------------------------------------------------- Axolotl 0.19.0 (recorded)
# key → accepted YAML value types, from the pydantic annotations.
AXOLOTL_0_19_0 = {
    # axolotl/utils/schemas/peft.py, class LoraConfig
    "adapter": (STR,),  # str | None
    "load_in_4bit": (BOOL,),  # bool | None
    "load_in_8bit": (BOOL,),  # bool | None
    "lora_r": (INT,),  # int | None
    "lora_alpha": (INT,),  # int | None
    "lora_dropout": (FLOAT, INT),  # float | None
    "lora_fan_in_fan_out": (BOOL,),  # bool | None
    "lora_target_modules": (STR, LIST),  # str | list[str] | None
    "lora_target_linear": (BOOL,),  # bool | None
    "lora_modules_to_save": (LIST,),  # list[str] | None
    "lora_rank_pattern": (DICT,),  # dict[str, PositiveInt] | None
    "lora_alpha_pattern": (DICT,),  # dict[str, PositiveInt] | None
    "peft_layers_to_transform": (LIST,),  # list[int] | None
    "peft_layers_pattern": (LIST,),  # list[str] | None
    "peft_use_dora": (BOOL,),  # bool | None
    "peft_use_rslora": (BOOL,),  # bool | None
    # axolotl/utils/schemas/model.py, class ModelInputConfig
    "base_model": (STR,),  # str
    # axolotl/utils/schemas/training.py, class HyperparametersConfig
    "micro_batch_size": (INT,),  # int | None
    "gradient_accumulation_steps": (INT,),  # int | None
    "num_epochs": (FLOAT, INT),  # float
    "learning_rate": (FLOAT, STR),  # str | float
    "optimizer": (STR,),  # str | CustomSupportedOptimizers | None
    # axolotl/utils/schemas/config.py, class AxolotlInputConfig
    "sequence_len": (INT,),  # int
    "max_steps": (INT,),  # int | None
    "gradient_checkpointing": (BOOL, STR),  # Literal['offload', 'offload_disk'] | bool | None
    "bf16": (BOOL, STR),  # Literal['auto'] | bool | None
    "fp16": (BOOL,),  # bool | None
}

# ---------------------------------------------------------------- LLaMA-Factory 0.9.5 (recorded)
LLAMAFACTORY_0_9_5 = {
    # src/llamafactory/hparams/model_args.py: BaseModelArguments, QuantizationArguments
    "model_name_or_path": (STR,),  # str | None
    "upcast_layernorm": (BOOL,),  # bool
    "disable_gradient_checkpointing": (BOOL,),  # bool
    "quantization_bit": (INT,),  # int | None
    # src/llamafactory/hparams/data_args.py: DataArguments
    "cutoff_len": (INT,),  # int
    # src/llamafactory/hparams/finetuning_args.py: FinetuningArguments, LoraArguments
    "stage": (STR,),  # Literal['pt', 'sft', 'rm', 'ppo', 'dpo', 'kto']
    "finetuning_type": (STR,),  # Literal['lora', 'oft', 'freeze', 'full']
    "lora_rank": (INT,),  # int
    "lora_alpha": (INT,),  # int | None
    "lora_dropout": (FLOAT, INT),  # float
    "lora_target": (STR,),  # str, split on commas in __post_init__
    "use_dora": (BOOL,),  # bool
    "use_rslora": (BOOL,),  # bool
    "additional_target": (STR,),  # str | None
}
LLAMAFACTORY_LITERALS = {
    "stage": {"pt", "sft", "rm", "ppo", "dpo", "kto"},
    "finetuning_type": {"lora", "oft", "freeze", "full"},
}

# ---------------------------------------------------------------- Unsloth 2026.10.9 (recorded)
# unsloth/models/llama.py, FastLlamaModel.get_peft_model (FastLanguageModel.get_peft_model wraps it):
# named parameters; ``**kwargs`` goes into ``peft.LoraConfig(**arguments)`` unchanged.
UNSLOTH_GET_PEFT_MODEL = frozenset(
    [
        "r",
        "target_modules",
        "lora_alpha",
        "lora_dropout",
        "bias",
        "layers_to_transform",
        "layers_pattern",
        "finetune_last_n_layers",
        "use_gradient_checkpointing",
        "random_state",
        "max_seq_length",
        "use_rslora",
        "modules_to_save",
        "init_lora_weights",
        "loftq_config",
        "temporary_location",
        "qat_scheme",
        "target_parameters",
        "ensure_weight_tying",
        "offload_layers",
        "checkpoint_skip_layers",
    ]
)
# unsloth/models/loader.py, FastLanguageModel.from_pretrained (first parameters; load_in_4bit defaults True).
UNSLOTH_FROM_PRETRAINED = frozenset(
    [
        "model_name",
        "max_seq_length",
        "dtype",
        "load_in_4bit",
        "load_in_8bit",
        "load_in_16bit",
        "full_finetuning",
        "token",
        "device_map",
        "rope_scaling",
        "fix_tokenizer",
        "trust_remote_code",
        "use_gradient_checkpointing",
        "revision",
    ]
)

# ---------------------------------------------------------------- torchtune 0.6.1 (recorded)
# torchtune/models/<family>/__init__.py __all__, the lora_* builders of the families BUILDERS uses.
TORCHTUNE_0_6_1_BUILDERS = {
    "llama2": {"lora_llama2", "lora_llama2_7b", "lora_llama2_13b", "lora_llama2_70b", "lora_llama2_classifier"},
    "llama3_1": {"lora_llama3_1", "lora_llama3_1_8b", "lora_llama3_1_70b", "lora_llama3_1_405b"},
    "mistral": {"lora_mistral", "lora_mistral_7b", "lora_mistral_classifier", "lora_mistral_reward_7b"},
    "phi3": {"lora_phi3", "lora_phi3_mini"},
    "qwen2_5": {
        "lora_qwen2_5_0_5b", "lora_qwen2_5_1_5b_base", "lora_qwen2_5_1_5b_instruct", "lora_qwen2_5_3b",
        "lora_qwen2_5_7b_base", "lora_qwen2_5_7b_instruct", "lora_qwen2_5_14b_base", "lora_qwen2_5_14b_instruct",
        "lora_qwen2_5_32b_base", "lora_qwen2_5_32b_instruct", "lora_qwen2_5_72b_base", "lora_qwen2_5_72b_instruct",
    },
}  # fmt: skip
# torchtune 0.6.1 has no torchtune/models/qwen3 (Qwen3 arrived after the 0.6 release).
# Every one of those builders (_model_builders.py) takes exactly these keyword arguments.
TORCHTUNE_BUILDER_ARGS = frozenset(
    [
        "lora_attn_modules",
        "apply_lora_to_mlp",
        "apply_lora_to_output",
        "lora_rank",
        "lora_alpha",
        "lora_dropout",
        "use_dora",
        "quantize_base",
    ]
)
# torchtune/modules/peft/_utils.py: LORA_ATTN_MODULES = Literal["q_proj", "k_proj", "v_proj", "output_proj"]
TORCHTUNE_ATTN = {"q_proj", "k_proj", "v_proj", "output_proj"}
# recipes/configs/llama3_1/8B_lora_single_device.yaml, top-level keys (and optimizer's).
TORCHTUNE_RECIPE_KEYS = frozenset(
    [
        "output_dir",
        "model",
        "tokenizer",
        "checkpointer",
        "resume_from_checkpoint",
        "save_adapter_weights_only",
        "dataset",
        "seed",
        "shuffle",
        "batch_size",
        "optimizer",
        "lr_scheduler",
        "loss",
        "epochs",
        "max_steps_per_epoch",
        "gradient_accumulation_steps",
        "clip_grad_norm",
        "compile",
        "metric_logger",
        "log_every_n_steps",
        "log_peak_memory_stats",
        "device",
        "dtype",
        "enable_activation_checkpointing",
        "enable_activation_offloading",
        "profiler",
    ]
)
TORCHTUNE_OPTIMIZER_KEYS = frozenset({"_component_", "lr", "weight_decay", "fused"})
TORCHTUNE_DTYPES = {"bf16", "fp32"}  # the recipe refuses fp16 (training/precision.py)


def _rec(model, **kw):
    return recommend(load_anatomy(resolve_source(model)), AdviceInputs(**kw)).to_dict()


# (model, inputs): QLoRA fit, DoRA + a layer list, Conv1D GPT-2, fused Phi-3, a 16-bit Qwen.
CASES = {
    "llama-3.1-8b qlora": ("llama-3.1-8b", {"task": "complex-qa", "dataset_size": 5000, "vram_bytes": 8 * GiB}),
    "llama-2-7b dora layers": ("llama-2-7b", {"dataset_size": 1000, "goal": "quality", "layers": (16, 17)}),
    "gpt2 seed": ("gpt2", {"task": "simple-qa", "dataset_size": 1000, "protect_knowledge": True, "rules": "seed"}),
    "phi-3-mini memory": ("phi-3-mini", {"goal": "memory", "rules": "seed"}),
    "qwen2.5-7b": ("qwen2.5-7b", {"dataset_size": 3000}),
}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request):
    model, inputs = CASES[request.param]
    return model, _rec(model, **inputs)


def _typed(out, schema, fmt):
    for key, value in out.items():
        assert key in schema, f"{fmt} defines no key {key!r}"
        types = schema[key]
        assert type(value) in types, f"{fmt} {key}={value!r}: {type(value).__name__} is not one of {types}"


def test_whitelists_are_within_the_recorded_schemas():
    assert set(AXOLOTL_0_19_0) >= AXOLOTL_KEYS
    assert LLAMAFACTORY_KEYS - set(LLAMAFACTORY_0_9_5) <= _training_args()
    assert UNSLOTH_PEFT_KEYS <= UNSLOTH_GET_PEFT_MODEL and UNSLOTH_LOAD_KEYS <= UNSLOTH_FROM_PRETRAINED
    assert MODEL_KEYS - {"_component_"} == TORCHTUNE_BUILDER_ARGS
    assert TOP_KEYS <= TORCHTUNE_RECIPE_KEYS and OPTIMIZER_KEYS <= TORCHTUNE_OPTIMIZER_KEYS


def test_axolotl(case):
    model, rec = case
    out = yaml.safe_load(export_config("axolotl", rec, model))
    _typed(out, AXOLOTL_0_19_0, "Axolotl")
    # LoraConfig.validate_qlora: "Require cfg.load_in_4bit to be True for qlora"; "Can't load qlora in 8bit".
    if out["adapter"] == "qlora":
        assert out.get("load_in_4bit") is True and not out.get("load_in_8bit")
    assert out["adapter"] in ("lora", "qlora")
    assert "lora_target_modules" in out or out.get("lora_target_linear") is True
    assert "/" in out["base_model"]  # a Hub id (org/name), never the catalog alias


def _training_args():
    from transformers import Seq2SeqTrainingArguments

    return {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}


def test_llamafactory(case):
    model, rec = case
    out = yaml.safe_load(export_config("llamafactory", rec, model))
    training = _training_args()
    own = {k: v for k, v in out.items() if k not in training}
    _typed(own, LLAMAFACTORY_0_9_5, "LLaMA-Factory")
    for key, allowed in LLAMAFACTORY_LITERALS.items():
        assert out[key] in allowed
    assert set(out) - set(own) <= {"do_train", "bf16", "fp16", "learning_rate", "per_device_train_batch_size"} | {
        "gradient_accumulation_steps",
        "num_train_epochs",
        "max_steps",
    }
    assert out.get("bf16") is (rec["training"]["dtype"] == "bf16")
    assert out.get("upcast_layernorm", False) is (out.get("quantization_bit") == 4)


def test_unsloth(case):
    from peft import LoraConfig

    model, rec = case
    tree = ast.parse(export_config("unsloth", rec, model))
    calls = {
        n.func.attr: {k.arg: ast.literal_eval(k.value) for k in n.keywords}
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }
    load, peft = calls["from_pretrained"], calls["get_peft_model"]
    assert set(load) <= UNSLOTH_FROM_PRETRAINED and isinstance(load["load_in_4bit"], bool)
    named = set(peft) & UNSLOTH_GET_PEFT_MODEL
    forwarded = set(peft) - UNSLOTH_GET_PEFT_MODEL
    assert forwarded <= UNSLOTH_PASSTHROUGH_KEYS
    # What goes through **kwargs must be a real LoraConfig field (real PEFT).
    assert forwarded <= {f.name for f in dataclasses.fields(LoraConfig)}
    assert peft.get("use_dora", False) is (rec["config"].get("use_dora") is True)
    assert named >= {"r", "target_modules", "lora_alpha"}


def test_torchtune(case):
    model, rec = case
    if model not in BUILDERS:  # GPT-2: no torchtune builder, so refused, not written half-right
        with pytest.raises(ConfigError, match="no LoRA model builder"):
            export_config("torchtune", rec, model)
        return
    out = yaml.safe_load(export_config("torchtune", rec, model))
    family, _, name = out["model"]["_component_"].removeprefix("torchtune.models.").partition(".")
    assert name in TORCHTUNE_0_6_1_BUILDERS[family]
    assert set(out["model"]) - {"_component_"} <= TORCHTUNE_BUILDER_ARGS
    assert set(out["model"]["lora_attn_modules"]) <= TORCHTUNE_ATTN
    assert set(out) <= TORCHTUNE_RECIPE_KEYS and out.get("dtype", "bf16") in TORCHTUNE_DTYPES


def test_every_torchtune_builder_exists_in_0_6_1():
    for component in BUILDERS.values():
        family, _, name = component.removeprefix("torchtune.models.").partition(".")
        assert name in TORCHTUNE_0_6_1_BUILDERS.get(family, set()), component


def test_peft(case):
    import json

    from peft import AdaLoraConfig, LoraConfig

    model, rec = case
    kw = json.loads(export_config("peft", rec, model))
    (AdaLoraConfig if "init_r" in kw else LoraConfig)(**kw)
    tree = ast.parse(export_config("peft-python", rec, model))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "LoraConfig")
    assert {k.arg: ast.literal_eval(k.value) for k in call.keywords} == kw
