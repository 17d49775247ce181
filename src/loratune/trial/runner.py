"""``TrialRunner``: load the base model once, run many trials on it, leave it clean after each."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loratune.budget import AdapterSpec
from loratune.models import ModelSource, resolve_source
from loratune.trial.precision import resolve_compute_dtype
from loratune.trial.speed import set_threads, torch_dtype
from loratune.trial.types import TrainSettings, TrialResult


class TrialRunner:
    """Holds one base model (and tokenizer) for a process; ``run`` trains one adapter on it.

    ``source`` is a :class:`ModelSource`, a model string (``smollm2-135m``, a directory, a .gguf),
    or an already-loaded ``(model, tokenizer)`` pair (tests). The base is kept in the compute dtype
    (bf16 by default: the frozen weights are only read, and bf16 matmuls run ~2.7× faster than fp32
    on AVX512-BF16 CPUs); a trial asking for another dtype gets a second copy, made once and kept.
    """

    def __init__(
        self,
        source: ModelSource | str | tuple[Any, Any],
        *,
        compute_dtype: str = "bf16",
        device: str = "cpu",
        allow_pickle: bool = False,
        threads: int | None = None,
        quant: str = "none",
    ) -> None:
        """``threads``: CPU threads for every trial of this runner (None: ``LORATUNE_THREADS`` or
        measured, and re-tuned while training as the machine's load changes). ``device``: cpu, cuda,
        cuda:N or auto (trial/device.py). ``quant``: none, 8bit or 4bit (models/quantized.py)."""
        from loratune.models.quantized import check_quant
        from loratune.trial.device import resolve_device

        self.device = resolve_device(device)
        self.quant = check_quant(quant)
        self.threads = threads
        self.allow_pickle = allow_pickle
        self.compute_dtype = resolve_compute_dtype(compute_dtype, self.device)
        self._models: dict[str, Any] = {}
        self._anatomy: Any = None
        if self.device == "cpu":  # no CPU thread tuning on CUDA
            set_threads(threads)
        if isinstance(source, tuple):
            model, self.tokenizer = source
            self.source: ModelSource | None = None
            self.label = type(model).__name__
            self._models[self.compute_dtype] = _prepare(self._place(model, self.compute_dtype))
        else:
            self.source = resolve_source(source) if isinstance(source, str) else source
            self.label = self.source.label if hasattr(self.source, "label") else str(source)
            self._models[self.compute_dtype], self.tokenizer = self._load(self.compute_dtype)
        if self.tokenizer.pad_token_id is None and self.tokenizer.eos_token_id is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @property
    def model(self) -> Any:
        """The base model in the runner's compute dtype (no adapter attached between trials)."""
        return self._models[self.compute_dtype]

    def model_for(self, compute_dtype: str) -> Any:
        dtype = resolve_compute_dtype(compute_dtype, self.device)
        if dtype not in self._models:
            if self.source is not None:
                self._models[dtype], _ = self._load(dtype)
            elif self.quant != "none":
                from loratune.errors import ConfigError

                raise ConfigError(
                    f"this runner's {self.quant} base computes in {self.compute_dtype}, not {dtype}",
                    f"build the runner with compute_dtype={dtype!r}",
                )
            else:
                self._models[dtype] = _prepare(copy.deepcopy(self.model).to(torch_dtype(dtype)))
        return self._models[dtype]

    @property
    def anatomy(self) -> Any:
        if self._anatomy is None:
            from loratune.anatomy.extract import anatomy_from_model

            self._anatomy = anatomy_from_model(self.model, source=self.label)
        return self._anatomy

    def run(
        self,
        adapter: AdapterSpec,
        settings: TrainSettings,
        train: Sequence[Any],
        val: Sequence[Any],
        reference: Sequence[Any] | None = None,
        *,
        on_eval: Callable[[int, float], bool] | None = None,
        save_dir: Path | None = None,
        progress: bool = True,
        peft_extra: dict[str, Any] | None = None,
        measure_memory: bool = True,
    ) -> TrialResult:
        """Train ``adapter`` with ``settings``; the base model is restored before this returns.

        ``on_eval(step, val_loss)`` runs every ``settings.eval_every`` steps; returning True stops
        the trial with status ``pruned``. ``peft_extra`` adds raw PEFT config keys (e.g. AdaLoRA's
        ``tinit``/``tfinal``/``deltaT``/``orth_reg_weight``).
        """
        from loratune.trial.loop import run_trial

        return run_trial(
            self.model_for(settings.compute_dtype),
            self.tokenizer,
            self.anatomy,
            adapter,
            settings,
            train,
            val,
            reference,
            on_eval=on_eval,
            save_dir=save_dir,
            progress=progress,
            peft_extra=peft_extra,
            device=self.device,
            measure_memory=measure_memory,
            threads=self.threads,
        )

    def _load(self, dtype: str) -> tuple[Any, Any]:
        from loratune.models.weights import load_model

        assert self.source is not None
        model, tok = load_model(
            self.source, dtype=dtype, device=self.device, allow_pickle=self.allow_pickle, quant=self.quant
        )
        return _prepare(model), tok

    def _place(self, model: Any, dtype: str) -> Any:
        """An in-memory model on this runner's device, in ``dtype`` (or quantized by bitsandbytes)."""
        from loratune.models.quantized import quant_of

        if quant_of(model) != "none":  # quantized already (e.g. a bench's QLoRA base): placed, kept as it is
            self.quant = quant_of(model)
            return model
        if self.quant != "none":
            # In place, no disk round trip: the same layers as from_pretrained(BitsAndBytesConfig) (tested).
            from loratune.models.quantized import quantize_in_memory

            return quantize_in_memory(model, self.quant, compute_dtype=dtype, device=self.device)
        return model.to(device=self.device, dtype=torch_dtype(dtype))


def _prepare(model: Any) -> Any:
    """Frozen and in eval mode: the base model is only ever read."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def quiet_libraries() -> None:
    """For the CLI: no weight-loading progress bars and no deprecation notices raised *inside*
    transformers/PEFT (e.g. PEFT reading ``is_gradient_checkpointing``) that a user cannot act on."""
    import logging
    import warnings

    # bitsandbytes (imported by PEFT whenever installed) warns on every start on AVX512-BF16 CPUs that
    # it cannot fetch an optional kernel from the Hub — loratune never downloads, so the notice is noise.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)(\.|$)")
