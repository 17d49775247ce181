"""The rule choices of one recommendation: each method picks a side by ``--rules`` and appends its
explanations in display order. ``recommend.py`` assembles, fits and counts."""

from __future__ import annotations

import math
from dataclasses import replace

from loratune.advise import explain as S
from loratune.advise import rules as R
from loratune.advise.adalora import init_rank
from loratune.advise.explain import Explanation, disagreement
from loratune.advise.inputs import MICRO_BATCH_START, AdviceInputs, check_inputs
from loratune.advise.modules import (
    STRATEGY_LABELS,
    TARGETS_WHY,
    role_targets,
    seed_targets,
    strategy_literature,
    strategy_seed,
)
from loratune.advise.presets import Preset, get_preset
from loratune.advise.tasks import TASK_CLASSES, TaskClass, TaskMapping, map_task
from loratune.anatomy.targets import TargetSpec, resolve
from loratune.anatomy.types import Anatomy, TargetWarning
from loratune.budget.params import count_params
from loratune.budget.spec import AdapterSpec


def task_type(anatomy: Anatomy) -> str | None:
    if anatomy.facts.is_encoder_decoder:
        return "SEQ_2_SEQ_LM"
    if anatomy.architecture.endswith(("ForCausalLM", "LMHeadModel")):
        return "CAUSAL_LM"
    if anatomy.architecture.endswith("ForSequenceClassification"):
        return "SEQ_CLS"  # PEFT then trains the head (classifier / score) in full
    return None  # encoder-only: the task head decides (SEQ_CLS, TOKEN_CLS...)


class Advisor:
    """One recommendation being built; each method adds its explanations in display order."""

    def __init__(self, anatomy: Anatomy, inputs: AdviceInputs) -> None:
        check_inputs(inputs)
        self.a, self.i, self.rules = anatomy, inputs, inputs.rules
        self.preset: Preset | None = get_preset(inputs.preset) if inputs.preset else None
        self.ex: list[Explanation] = []
        self.warnings: list[TargetWarning] = []
        task_text = inputs.task or (self.preset.task if self.preset else None)
        self.mapping: TaskMapping | None = map_task(task_text) if task_text else None
        self.task: TaskClass = self.mapping.task if self.mapping else TASK_CLASSES["simple-qa"]
        self.goal = inputs.goal
        if self.preset and self.preset.goal and inputs.goal == "balanced":
            self.goal = self.preset.goal
        self.n = inputs.dataset_size
        self.tokens, self.tokens_note = inputs.dataset_tokens, inputs.tokens_note
        if self.tokens is None and self.n is not None:
            self.tokens = self.n * max(1, inputs.seq_len // 2)
            self.tokens_note = (
                f"assumed {inputs.seq_len // 2} tokens per example (half of --seq-len); pass --data to count"
            )

    def follow(self, seed: Explanation, lit: Explanation, why: str, combined: str = "literature") -> Explanation:
        """Pick the side ``--rules`` asks for; under ``combined`` the side named by ``combined``."""
        side = self.rules if self.rules != "combined" else combined
        if side == "seed":
            reason = "loratune follows the seed (--rules seed)." if self.rules == "seed" else why
            return disagreement(seed.param, seed, lit, reason)
        reason = "loratune follows the literature (--rules literature)." if self.rules == "literature" else why
        return disagreement(lit.param, lit, seed, reason)

    # ---------------------------------------------------------------- steps
    def task_row(self) -> None:
        if self.mapping:
            self.ex.append(Explanation("task", self.task.name, self.mapping.describe(), S.SEED_TASK))
        else:
            self.ex.append(
                Explanation(
                    "task", self.task.name, "no --task: assumed simple-qa (the seed's own scenario)", S.SEED_TASK
                )
            )

    def targets(self) -> tuple[str, list[str]]:
        if self.preset:
            pick = Explanation("strategy", self.preset.strategy, f"preset {self.preset.name}", S.SEED_PRESETS)
            lit = strategy_literature()
            chosen = pick if self.rules == "seed" else disagreement("strategy", pick, lit, "the preset fixes it.")
        else:
            chosen = self.follow(strategy_seed(self.task, self.goal), strategy_literature(), TARGETS_WHY)
        strategy = str(chosen.value)
        seed_names, w1 = seed_targets(self.a, strategy)
        role_names, w2 = role_targets(self.a, strategy)
        names = seed_names if self.rules == "seed" else role_names
        self.warnings += w1 if self.rules == "seed" else w2
        alt = chosen.alternative
        alt_names = None
        if alt is not None:
            alt_names = (seed_targets if self.rules != "seed" else role_targets)(self.a, str(alt.value))[0]
        note = chosen.note
        if self.rules != "seed" and self._modules(seed_names) != self._modules(role_names):
            note = (
                f"{note} The seed writes this as {seed_names}, which matches different modules here "
                f"({self._clash(seed_names, role_names)})."
            ).strip()
        ex = Explanation(
            "target_modules",
            names,
            f"{STRATEGY_LABELS[strategy]}: {chosen.rule}",
            chosen.source,
            {"strategy": strategy, "modules": len(resolve(self.a, TargetSpec(tuple(names))).modules)},
            None if alt is None or alt_names is None else S.Alternative(alt_names, alt.rule, alt.source),
            note,
        )
        if self.rules == "seed":
            res = resolve(self.a, TargetSpec(tuple(names)))
            if any(w.kind == "mixed_roles" for w in res.warnings):
                ex = replace(ex, note=f"{ex.note} {self._clash(names, role_names)}".strip())
        self.ex.append(ex)
        return strategy, names

    def _modules(self, names: list[str]) -> set[str]:
        """The module names a target list adapts here (order and spelling of the list aside)."""
        return {m.name for m in resolve(self.a, TargetSpec(tuple(names))).modules}

    def _clash(self, literal: list[str], by_role: list[str]) -> str:
        p_lit = count_params(self.a, AdapterSpec(TargetSpec(tuple(literal)), r=8)).trainable_params
        p_role = count_params(self.a, AdapterSpec(TargetSpec(tuple(by_role)), r=8)).trainable_params
        clash = [w for w in resolve(self.a, TargetSpec(tuple(literal))).warnings if w.kind == "mixed_roles"]
        head = (
            f"target '{clash[0].target}' matches modules of different roles ({', '.join(clash[0].roles)})"
            if clash
            else "the names differ"
        )
        return f"{head}: at r=8 {literal} trains {p_lit:,} params, {by_role} trains {p_role:,}"

    def rank(self, names: list[str]) -> int:
        if self.preset:
            ex = Explanation("r", self.preset.r, f"preset {self.preset.name}", S.SEED_PRESETS)
            self.ex.append(ex)
            return self.preset.r
        p1 = count_params(self.a, AdapterSpec(TargetSpec(tuple(names)), r=1)).trainable_params
        seed = R.seed_rank(self.mapping.task if self.mapping else None, self.n, self.a.total_params, self.i.vram_bytes)
        lit = R.literature_rank(self.tokens, p1, self.tokens_note)
        comb = R.combined_rank(self.task, self.tokens, p1, self.tokens_note)
        if self.goal == "memory":
            # More matrices at lower rank beat fewer at higher rank [LoRA Table 5]: cap r, keep every module.
            cap = (
                "goal=memory: capped at 8, keeping every module (more matrices at lower rank beat fewer at higher rank)"
            )
            lit, comb = (
                replace(e, value=8, rule=f"{e.rule}; {cap}", source=f"{e.source}; {S.LORA} Table 5")
                if int(e.value) > 8
                else e
                for e in (lit, comb)
            )
        why = R.RANK_WHY
        if self.task.name == "classification":  # the seed's r 1–4 vs the GLUE recipe (advise/classification.py)
            from loratune.advise import classification as C

            lit, why = C.literature_cls_rank(int(lit.inputs.get("capacity_r", 1))), C.CLS_RANK_WHY
            seed = seed if self.rules == "seed" else comb
        if self.rules == "seed":
            ex = disagreement("r", seed, comb, "loratune follows the seed (--rules seed).")
        elif self.rules == "literature":
            ex = disagreement("r", lit, seed, "loratune follows the literature (--rules literature).")
        elif self.task.name == "classification":
            ex = disagreement("r", comb, lit, why)
        else:
            ex = disagreement("r", comb, seed, R.RANK_WHY)
        ex = self._cap_rank(ex, names)
        self.ex.append(ex)
        return int(ex.value)

    def _cap_rank(self, ex: Explanation, names: list[str]) -> Explanation:
        """No rule may propose a rank this model's matrices cannot hold (``rules.rank_ceiling``)."""
        mods = resolve(self.a, TargetSpec(tuple(names))).modules
        cap = R.rank_ceiling([(m.in_features, m.out_features) for m in mods])
        smallest = min(mods, key=lambda m: m.in_features * m.out_features / (m.in_features + m.out_features))
        why = (
            f"above it the adapter of {smallest.suffix} ({smallest.in_features} → {smallest.out_features}) would "
            "hold as many parameters as the matrix (r·(in + out) ≥ in·out)"
        )
        if self.i.method == "adalora":
            # AdaLoRA allocates init_r (1.5–2× the target) before pruning: that one must fit min(in, out).
            least = min(min(m.in_features, m.out_features) for m in mods)
            while cap > 1 and init_rank(cap, self.rules) > least:
                cap //= 2
        return R.cap_rank(ex, cap, why)

    def alpha(self, r: int) -> float:
        if self.preset:
            self.ex.append(Explanation("lora_alpha", self.preset.alpha, f"preset {self.preset.name}", S.SEED_PRESETS))
            return self.preset.alpha
        ex = R.alpha_rule(r)
        self.ex.append(ex)
        return float(ex.value)

    def dropout(self) -> float:
        if self.preset:
            ex = Explanation("lora_dropout", self.preset.dropout, f"preset {self.preset.name}", S.SEED_PRESETS)
        else:
            ex = self.follow(
                R.dropout_seed(self.task), R.dropout_literature(self.a.total_params), R.DROPOUT_WHY, "seed"
            )
        self.ex.append(ex)
        return float(ex.value)

    def method(self) -> str:
        m = self.i.method
        if m == "adalora":
            self.ex.append(
                Explanation(
                    "method",
                    "adalora",
                    "--method adalora: SVD-form adapters whose rank budget is pruned toward target_r during training; "
                    "it gives more rank to FFN and top layers",
                    f"{S.SEED_ADALORA}; {S.ADALORA}",
                )
            )
            return "adalora"
        if m in ("lora", "dora"):
            self.ex.append(Explanation("use_dora", m == "dora", f"--method {m}", "user"))
            return m
        ex = self.follow(R.dora_seed(self.goal), R.dora_literature(self.goal), R.DORA_WHY)
        if not ex.value and ex.alternative is None:
            # Both sides say off here, but seed 003 §6 says "DoRA by default": show it and why not.
            ex = replace(ex, alternative=R.SEED_DORA_DEFAULT, note=f"{ex.note} {R.DORA_WHY}".strip())
        self.ex.append(ex)
        return "dora" if ex.value else "lora"

    def layers(self) -> list[int] | None:
        if self.i.layers is not None:
            ex = Explanation("layers_to_transform", list(self.i.layers), "--layers", "user")
        else:
            seed = R.layers_seed(self.a.num_layers, self.i.protect_knowledge)
            ex = self.follow(seed, R.layers_literature(self.i.protect_knowledge), R.LAYERS_WHY)
        self.ex.append(ex)
        return None if ex.value is None else list(ex.value)

    def schedule(self) -> tuple[int, int, int, int | None, int | None]:
        eff_ex = R.batch_rule(self.n)
        self.ex.append(eff_ex)
        eff = int(eff_ex.value)
        micro = min(eff, MICRO_BATCH_START)
        self.ex.append(
            Explanation(
                "per_device_train_batch_size",
                micro,
                f"micro-batch {micro} × gradient accumulation {eff // micro} = effective batch {eff}",
                S.LORATUNE,
            )
        )
        ep_ex = R.epochs_rule(self.n, self.i.protect_knowledge)
        self.ex.append(ep_ex)
        epochs = int(ep_ex.value)
        steps_per_epoch = math.ceil(self.n / eff) if self.n else None
        total = steps_per_epoch * epochs if steps_per_epoch else None
        if total is not None:
            self.ex.append(
                Explanation(
                    "total_steps",
                    total,
                    f"ceil({self.n:,} / {eff}) = {steps_per_epoch} steps per epoch × {epochs} epochs",
                    S.LORATUNE,
                    {"dataset_size": self.n, "effective_batch_size": eff, "epochs": epochs},
                )
            )
        return eff, micro, epochs, steps_per_epoch, total

    def lr(self, r: int, alpha: float, total: int | None) -> float:
        # The caller's run length wins (a search run of 30 steps), else this recommendation's schedule.
        steps = self.i.total_steps if self.i.total_steps is not None else total
        scaling = alpha / r
        lit = R.lr_literature(self.a.facts.hidden_size, steps, alpha)
        if self.task.name == "classification":
            from loratune.advise.classification import head_row, literature_cls_lr

            lit = literature_cls_lr()
            self.ex.append(head_row(self.a))
        ex = self.follow(
            R.lr_seed(scaling),
            lit,
            "loratune follows the literature: the seed's pairs (lr·alpha ≈ 3e-3 at r=8) are one "
            "setup's values; the literature's follow the model and the run's length.",
        )
        self.ex.append(ex)
        return float(ex.value)
