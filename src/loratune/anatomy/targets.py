"""Which modules a target spec adapts — exactly as PEFT decides it.

PEFT's rules (peft/tuners/tuners_utils.py ``check_target_module_exists`` and
``_maybe_include_all_linear_layers``, peft 0.17–0.21):
- a string is a regex that must ``fullmatch`` the full module name; ``layers_to_transform`` is
  ignored then;
- a list matches a name equal to an entry or ending in ``"." + entry``;
- ``"all-linear"`` is every Linear/Conv1D except the output embedding (the LM head);
- ``layers_to_transform`` keeps modules whose first numbered path segment (after ``layers_pattern``
  when given) is in the list;
- ``exclude_modules`` and ``modules_to_save`` are never adapted.
loratune adds role shorthands (``attention``, ``mlp``, ``all``, ``qv``) that expand to this
model's real names, and refuses a name that matches nothing, naming the closest real ones.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, replace

from loratune.anatomy.types import ATTENTION_ROLES, MLP_ROLES, AdaptableModule, Anatomy, TargetWarning
from loratune.errors import TargetError

# PEFT's own layer-index rule (peft/tuners/tuners_utils.py, check_target_module_exists, when no
# layers_pattern is given): the first numbered path segment that follows a named one.
LAYER_INDEX_RE = re.compile(r".*?\.[^.]*\.(?P<idx>\d+)\.")


def matches_suffix(name: str, target: str) -> bool:
    """PEFT's list rule for ``target_modules`` and ``exclude_modules`` (tuners_utils.py,
    ``check_target_module_exists``): the full name equals the entry or ends in ``"." + entry``."""
    return name == target or name.endswith("." + target)


def layer_index(name: str, layers_pattern: tuple[str, ...] | None = None) -> int | None:
    """The layer a module lies in, by PEFT's rule: the first numbered segment after a named one, or
    the number right after one of ``layers_pattern`` when given."""
    if not layers_pattern:
        m = LAYER_INDEX_RE.match(name)
    else:
        m = None
        for p in layers_pattern:
            m = re.match(rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\.", name)
            if m is not None:
                break
    return int(m.group("idx")) if m else None


ALL_LINEAR = "all-linear"
SHORTHANDS = {
    "attention": ATTENTION_ROLES,
    "attn": ATTENTION_ROLES,
    "mlp": MLP_ROLES,
    "ffn": MLP_ROLES,
    "all": ATTENTION_ROLES | MLP_ROLES,
    "qv": frozenset({"attn_q", "attn_v"}),
}


@dataclass(frozen=True)
class TargetSpec:
    """A target spec in PEFT's own terms (plus shorthands, resolved by :func:`expand_shorthand`)."""

    target_modules: tuple[str, ...] | str
    layers_to_transform: tuple[int, ...] | None = None
    layers_pattern: tuple[str, ...] | None = None
    exclude_modules: tuple[str, ...] = ()
    modules_to_save: tuple[str, ...] = ()
    include_embeddings: bool = False


@dataclass
class Resolution:
    modules: list[AdaptableModule]
    peft_target_modules: list[str] | str
    warnings: list[TargetWarning] = field(default_factory=list)


def parse_targets(text: str) -> tuple[str, ...] | str:
    """CLI form: ``c_attn,c_proj`` → list; ``all-linear`` or a shorthand → as is; ``re:…`` → regex."""
    text = text.strip()
    if text.startswith("re:"):
        return text[3:]
    if text.lower() == ALL_LINEAR:
        return ALL_LINEAR
    return tuple(t.strip() for t in text.split(",") if t.strip())


def minimal_suffixes(anatomy: Anatomy, chosen: list[AdaptableModule]) -> list[str]:
    """The shortest PEFT suffixes (``q_proj``, or ``attn.c_proj`` when the leaf alone would also hit
    modules outside ``chosen``) that match exactly ``chosen``."""
    chosen_names = {m.name for m in chosen}
    others = [m.name for m in anatomy.modules if m.name not in chosen_names]
    out: list[str] = []
    for m in chosen:
        parts = m.name.split(".")
        for k in range(1, len(parts) + 1):
            suffix = ".".join(parts[-k:])
            if suffix.split(".")[0].isdigit():
                continue  # a suffix starting at a layer index would pin one layer
            if not any(matches_suffix(o, suffix) for o in others):
                break
        else:
            suffix = m.name
        if suffix not in out:
            out.append(suffix)
    return out


def suffix_hint(anatomy: Anatomy, chosen: list[AdaptableModule]) -> str:
    """How to name exactly ``chosen`` in a warning: its minimal suffixes, or — when those pin one layer
    each (BERT's MLP output ``layer.N.output.dense``, whose ``output.dense`` also ends
    ``attention.output.dense``) — one regex with the layer index generalised."""
    names = minimal_suffixes(anatomy, chosen)
    if len(names) <= 3 or not all(re.search(r"(^|\.)\d+\.", n) for n in names):
        return ", ".join(names)
    patterns = {re.sub(r"\.\d+\.", r".\\d+.", m.name) for m in chosen}
    if len(patterns) != 1:
        return ", ".join(names)
    rx = patterns.pop().replace(".", r"\.").replace(r"\\d+", r"\d+")
    return "re:" + rx


def expand_shorthand(anatomy: Anatomy, name: str) -> list[str] | None:
    """``attention`` → this model's attention module suffixes; None when ``name`` is no shorthand."""
    roles = SHORTHANDS.get(name.lower())
    if roles is None:
        return None
    chosen = [m for m in anatomy.modules if m.role in roles]
    if name.lower() == "qv" and not chosen:
        fused = [m.suffix for m in anatomy.modules if m.role == "attn_qkv"]
        raise TargetError(
            f"{anatomy.source} fuses q, k and v into one matrix ({fused[0] if fused else 'qkv'}); "
            "q+v alone is impossible",
            "target the fused module (it adapts q, k and v together) or use `attention`",
        )
    if not chosen:
        raise TargetError(
            f"{anatomy.source} has no modules with roles {sorted(roles)}", "run `loratune inspect` to see its modules"
        )
    return minimal_suffixes(anatomy, chosen)


def _excluded(name: str, spec: TargetSpec) -> bool:
    if any(matches_suffix(name, e) for e in spec.exclude_modules):
        return True
    return any(re.match(rf"(^|.*\.){m}($|\..*)", name) for m in spec.modules_to_save)


# PEFT's PeftModelForSequenceClassification (task_type SEQ_CLS) appends these to modules_to_save
# (peft_model.py, ``classifier_module_names``): the classification head is trained in full, never LoRA'd.
SEQ_CLS_HEADS = ("classifier", "score")


def task_modules_to_save(anatomy: Anatomy) -> tuple[str, ...]:
    """The head names PEFT's SEQ_CLS adds for a ``…ForSequenceClassification`` model (none otherwise)."""
    if not anatomy.architecture.endswith("ForSequenceClassification"):
        return ()
    return tuple(h for h in SEQ_CLS_HEADS if any(n.endswith(h) for n in anatomy.module_params))


def with_task_heads(anatomy: Anatomy, spec: TargetSpec) -> TargetSpec:
    """``spec`` with the modules_to_save PEFT adds for the model's task (a classifier's head)."""
    extra = tuple(h for h in task_modules_to_save(anatomy) if h not in spec.modules_to_save)
    return replace(spec, modules_to_save=spec.modules_to_save + extra) if extra else spec


def resolve(anatomy: Anatomy, spec: TargetSpec) -> Resolution:
    """The modules ``spec`` adapts on ``anatomy``, in PEFT's exact semantics."""
    spec = with_task_heads(anatomy, spec)
    candidates = [m for m in anatomy.modules if spec.include_embeddings or m.kind != "embedding"]
    targets = spec.target_modules
    if isinstance(targets, str) and targets.lower() != ALL_LINEAR and targets.lower() in SHORTHANDS:
        targets = tuple(expand_shorthand(anatomy, targets) or ())
    elif not isinstance(targets, str):
        expanded: list[str] = []
        for t in targets:
            expanded.extend(expand_shorthand(anatomy, t) or [t])
        targets = tuple(dict.fromkeys(expanded))

    if isinstance(targets, str) and targets.lower() == ALL_LINEAR:
        chosen = [m for m in anatomy.modules if m.kind != "embedding" and m.name != anatomy.output_module]
        peft_targets: list[str] | str = ALL_LINEAR
    elif isinstance(targets, str):
        try:
            rx = re.compile(targets)
        except re.error as e:
            raise TargetError(
                f"bad target regex {targets!r}: {e}", "write a Python regex that matches full module names"
            ) from None
        chosen = [m for m in candidates if rx.fullmatch(m.name)]
        peft_targets = targets
        if not chosen:
            raise TargetError(
                f"the regex {targets!r} matches no adaptable module of {anatomy.source}",
                f"it must match full names, e.g. {candidates[0].name if candidates else '…'}",
            )
    else:
        _check_each_name_matches(anatomy, candidates, targets)
        chosen = [m for m in candidates if any(matches_suffix(m.name, t) for t in targets)]
        peft_targets = list(targets)

    if spec.layers_to_transform is not None:
        if isinstance(targets, str) and targets.lower() != ALL_LINEAR:
            # PEFT ignores layers for a regex and refuses the combination outright.
            raise TargetError(
                "layers_to_transform cannot be combined with a regex target (PEFT refuses it)",
                "put the layer numbers into the regex, or give target names instead",
            )
        if peft_targets == ALL_LINEAR:
            # PEFT refuses all-linear + layers_to_transform; the same modules as explicit names work.
            peft_targets = minimal_suffixes(anatomy, chosen)
        keep = set(spec.layers_to_transform)
        chosen = [m for m in chosen if layer_index(m.name, spec.layers_pattern) in keep]
        if not chosen:
            raise TargetError(
                f"no targeted module lies in layers {sorted(keep)}",
                f"{anatomy.source} has layers 0-{anatomy.num_layers - 1}",
            )
    _check_each_exclude_matches(anatomy, chosen, spec.exclude_modules)
    chosen = [m for m in chosen if not _excluded(m.name, spec)]
    if not chosen:
        raise TargetError("every matched module is excluded", "check exclude_modules / modules_to_save")
    return Resolution(
        modules=chosen, peft_target_modules=peft_targets, warnings=target_warnings(anatomy, chosen, targets)
    )


def _check_each_name_matches(anatomy: Anatomy, candidates: list[AdaptableModule], targets: tuple[str, ...]) -> None:
    for t in targets:
        if any(matches_suffix(m.name, t) for m in candidates):
            continue
        leaf = t.rsplit(".", 1)[-1]
        if leaf in anatomy.container_names:
            raise TargetError(
                f"target {t!r} is a {anatomy.container_names[leaf]}, which LoRA cannot wrap",
                f"target the Linear layers inside it; adaptable names: {', '.join(_suffix_names(candidates)[:12])}",
            )
        if any(m.suffix == leaf and m.kind == "embedding" for m in anatomy.modules):
            raise TargetError(f"target {t!r} is an embedding", "pass --embeddings to adapt embeddings too")
        close = difflib.get_close_matches(t, _suffix_names(candidates), n=4, cutoff=0.4)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else f"adaptable names: {', '.join(_suffix_names(candidates)[:12])}"
        )
        raise TargetError(f"target {t!r} matches no module of {anatomy.source}", hint)


def _check_each_exclude_matches(anatomy: Anatomy, chosen: list[AdaptableModule], excludes: tuple[str, ...]) -> None:
    """An ``exclude_modules`` entry that excludes none of the targeted modules is a typo or a mistake
    (PEFT only warns, "no modules were excluded"): refused like a target that matches nothing."""
    for e in excludes:
        if any(matches_suffix(m.name, e) for m in chosen):
            continue
        names = _suffix_names(chosen)
        elsewhere = any(matches_suffix(m.name, e) for m in anatomy.modules)
        close = difflib.get_close_matches(e, names, n=4, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else f"targeted names: {', '.join(names[:12])}"
        problem = (
            f"exclude {e!r} matches none of the targeted modules (only modules the targets leave out)"
            if elsewhere
            else f"exclude {e!r} matches no module of {anatomy.source}"
        )
        raise TargetError(problem, hint)


def _suffix_names(mods: list[AdaptableModule]) -> list[str]:
    return list(dict.fromkeys(m.suffix for m in mods))


def target_warnings(
    anatomy: Anatomy, chosen: list[AdaptableModule], targets: tuple[str, ...] | str
) -> list[TargetWarning]:
    """Warnings about what a spec really adapts (the seed's GPT-2 ``c_proj`` surprise)."""
    out: list[TargetWarning] = []
    if not isinstance(targets, str):
        for t in targets:
            hit = [m for m in chosen if matches_suffix(m.name, t)]
            roles = tuple(sorted({m.role for m in hit}))
            if len(roles) > 1:
                by_role = {r: suffix_hint(anatomy, [m for m in hit if m.role == r]) for r in roles}
                alt = "; ".join(f"{r}: {v}" for r, v in by_role.items())
                out.append(
                    TargetWarning(
                        "mixed_roles",
                        f"target '{t}' matches modules of different roles ({', '.join(roles)}): "
                        f"{len(hit)} modules. To pick one role use a longer suffix — {alt}",
                        t,
                        roles,
                    )
                )
    fused = sorted({m.suffix for m in chosen if m.role == "attn_qkv"})
    if fused:
        out.append(
            TargetWarning(
                "fused_qkv",
                "q, k and v share one fused matrix here: LoRA adapts all three together (q+v alone is impossible)",
                fused[0],
                ("attn_q", "attn_k", "attn_v"),
            )
        )
    if anatomy.output_module and any(m.name == anatomy.output_module for m in chosen) and anatomy.tied_embeddings:
        out.append(
            TargetWarning(
                "tied_head",
                "the LM head is tied to the input embeddings: adapting it changes how both are used",
                anatomy.output_module,
                ("lm_head", "embedding"),
            )
        )
    return out


def anatomy_warnings(anatomy: Anatomy) -> list[TargetWarning]:
    """Warnings about the model itself, shown by ``inspect``."""
    out: list[TargetWarning] = []
    by_suffix: dict[str, set[str]] = {}
    for m in anatomy.modules:
        by_suffix.setdefault(m.suffix, set()).add(m.role)
    for suffix, role_set in sorted(by_suffix.items()):
        if len(role_set) > 1:
            roles = tuple(sorted(role_set))
            hit = [m for m in anatomy.modules if m.suffix == suffix]
            per_role = "; ".join(f"{r} → {suffix_hint(anatomy, [m for m in hit if m.role == r])}" for r in roles)
            out.append(
                TargetWarning(
                    "ambiguous_suffix",
                    f"the bare name '{suffix}' matches modules of different roles ({per_role})",
                    suffix,
                    roles,
                )
            )
    fused = sorted({m.suffix for m in anatomy.modules if m.role == "attn_qkv"})
    if fused:
        out.append(
            TargetWarning(
                "fused_qkv",
                f"fused q/k/v in '{', '.join(fused)}': q+v-only targeting is impossible on this model",
                fused[0],
                ("attn_q", "attn_k", "attn_v"),
            )
        )
    if any(m.suffix == "gate_up_proj" for m in anatomy.modules):
        out.append(
            TargetWarning(
                "fused_gate_up",
                "fused gate/up projection 'gate_up_proj': the MLP gate and up matrices are adapted together",
                "gate_up_proj",
                ("mlp_gate", "mlp_up"),
            )
        )
    if anatomy.tied_embeddings:
        out.append(
            TargetWarning(
                "tied_head",
                f"the LM head ({anatomy.output_module}) shares its weight with the input embedding (tied)",
                anatomy.output_module,
                ("lm_head", "embedding"),
            )
        )
    return out
