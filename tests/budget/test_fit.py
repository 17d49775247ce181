"""Fits? The largest batch and sequence, and the give-up list in the seed's order."""

from __future__ import annotations

import pytest

from loratune.anatomy.targets import TargetSpec
from loratune.budget import AdapterSpec
from loratune.budget.fit import fit_report
from loratune.budget.memory import MemorySettings, estimate_memory
from loratune.errors import ConfigError
from loratune.models import load_anatomy, resolve_source

SMOL = load_anatomy(resolve_source("smollm2-135m"))
ALL = AdapterSpec(targets=TargetSpec(target_modules="all-linear"), r=16, alpha=32)
S = MemorySettings(batch_size=8, seq_len=512, dtype="bf16", device="cuda")
GiB = 2**30


def total(spec: AdapterSpec = ALL, **kw: object) -> int:
    return estimate_memory(SMOL, spec, S.replace(**kw)).total_bytes


def test_fits_with_headroom() -> None:
    rep = fit_report(SMOL, ALL, S, 80 * GiB)
    assert rep.fits
    assert rep.headroom_bytes == 80 * GiB - total() > 0
    assert rep.give_up == []


def test_largest_batch_and_seq_are_exact_boundaries() -> None:
    vram = 8 * GiB
    rep = fit_report(SMOL, ALL, S, vram)
    b, s = rep.max_batch_size, rep.max_seq_len
    assert b >= 1 and s >= 1
    assert total(batch_size=b) <= vram < total(batch_size=b + 1)
    assert total(seq_len=s) <= vram < total(seq_len=s + 1)


def test_does_not_fit_lists_seed_order_then_literature() -> None:
    vram = 3 * GiB
    rep = fit_report(SMOL, ALL, S, vram)
    assert not rep.fits and rep.headroom_bytes < 0
    actions = [g.action.split(" ")[0] for g in rep.give_up]
    assert actions == ["lower", "attention", "batch", "gradient", "4-bit"]
    by = {g.action.split(" ")[0]: g for g in rep.give_up}
    # Each option is priced alone against the current config.
    half_r = AdapterSpec(targets=ALL.targets, r=8, alpha=16)
    assert by["lower"].total_bytes == total(half_r)
    assert by["lower"].saves_bytes == rep.total_bytes - total(half_r)
    assert by["batch"].total_bytes == total(batch_size=4)
    assert by["gradient"].total_bytes == total(grad_checkpointing=True)
    # Lower r saves least: the adapter states and A's output are small next to activations.
    assert by["lower"].saves_bytes < by["gradient"].saves_bytes
    assert all(g.saves_bytes > 0 for g in rep.give_up)
    assert [g.fits for g in rep.give_up] == [g.total_bytes <= vram for g in rep.give_up]


def test_nothing_fits_gives_zero_sizes() -> None:
    rep = fit_report(SMOL, ALL, S, 100 * 2**20)
    assert (rep.max_batch_size, rep.max_seq_len) == (0, 0)


def test_attention_only_steps_down_to_qv() -> None:
    att = AdapterSpec(targets=TargetSpec(target_modules=("attention",)), r=8)
    rep = fit_report(SMOL, att, S, 1 * GiB)
    assert any(g.action == "q and v only" for g in rep.give_up)


def test_bad_vram() -> None:
    with pytest.raises(ConfigError, match="VRAM must be positive"):
        fit_report(SMOL, ALL, S, 0)


def test_cli_budget_prints_memory_and_fit_without_torch() -> None:
    import json
    import subprocess
    import sys

    from typer.testing import CliRunner

    from loratune.cli.app import app

    runner = CliRunner()
    plain = runner.invoke(app, ["budget", "gpt2", "--r", "8", "--alpha", "16", "--targets", "c_attn,c_proj"])
    assert plain.exit_code == 0
    assert "811,008" in plain.stdout and "0.65 %" in plain.stdout and "memory: ≈" in plain.stdout
    args = ["budget", "smollm2-135m", "--targets", "all-linear", "--r", "16", "--batch-size", "8", "--vram", "4GB"]
    shown = runner.invoke(app, [*args, "--seq-len", "512"])
    assert shown.exit_code == 0
    assert "activations: LoRA" in shown.stdout and "fits in 4.00 GiB: no" in shown.stdout
    assert "gradient" in shown.stdout and "메모리 부족 시" in shown.stdout  # FIT_ORDER's source
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    mem = data["memory"]
    assert mem["total_bytes"] == estimate_memory(SMOL, ALL, S).total_bytes
    assert mem["settings"]["batch_size"] == 8 and data["fit"]["fits"] is False
    assert data["fit"]["max_batch_size"] == fit_report(SMOL, ALL, S, 4 * GiB).max_batch_size
    # The estimate and the fit need no torch: `budget` stays fast.
    code = (
        "import sys; from typer.testing import CliRunner; from loratune.cli.app import app; "
        "r = CliRunner().invoke(app, ['budget', 'smollm2-135m', '--memory', '--vram', '8GB']); "
        "print(r.exit_code, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "False"]


def test_cli_bad_memory_option_is_one_line_error() -> None:
    from typer.testing import CliRunner

    from loratune.cli.app import app

    r = CliRunner().invoke(app, ["budget", "gpt2", "--dtype", "fp8"])
    assert isinstance(r.exception, ConfigError) and "unknown dtype" in str(r.exception)


def test_one_fit_order_for_budget_and_recommend() -> None:
    """budget --vram and recommend --vram walk the same levers, in the same order, with the same floors."""
    from loratune.advise.fit import Knobs, fit_to_vram
    from loratune.budget.fit import FIT_ORDER, R_FLOOR, fewer_modules, lower_r, smaller_batch

    order = [lever.name for lever in FIT_ORDER]
    assert order == ["lower r", "fewer modules", "smaller batch", "gradient checkpointing", "4-bit base"]
    assert FIT_ORDER[0].source == "seed 000 실전 팁 '메모리 부족 시'"
    assert (lower_r(16), lower_r(8), lower_r(5), lower_r(R_FLOOR), lower_r(2)) == (8, 4, 4, None, None)
    assert (fewer_modules("all"), fewer_modules("attention"), fewer_modules("qv")) == ("attention", "qv", None)
    assert (smaller_batch(4), smaller_batch(1)) == (2, None)

    # recommend's walk: every lever to its floor, in FIT_ORDER, nothing fits.
    names = {"all": ("q", "k", "v", "o", "up"), "attention": ("q", "k", "v", "o"), "qv": ("q", "v")}
    out = fit_to_vram(Knobs(16, "all", names["all"], 2, 1), 0, lambda k: 1 + k.r, names.__getitem__)
    walked = list(dict.fromkeys(s.action for s in out.steps))
    assert walked == order
    assert out.knobs.r == R_FLOOR and out.knobs.strategy == "qv" and out.knobs.micro_batch == 1
    sources = {s.action: s.source for s in out.steps}
    assert sources == {lever.name: lever.source for lever in FIT_ORDER}

    # budget's list: one priced option per lever, same order and sources (a 4-bit base only on CUDA).
    rep = fit_report(SMOL, ALL, S, 1)
    assert [g.source for g in rep.give_up] == [lever.source for lever in FIT_ORDER]
    # At the floor there is no "lower r" option any more.
    at_floor = AdapterSpec(targets=ALL.targets, r=R_FLOOR, alpha=2 * R_FLOOR)
    assert not any(g.action.startswith("lower r") for g in fit_report(SMOL, at_floor, S, 1).give_up)
