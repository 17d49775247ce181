"""The LR range test: its schedule, smoothing, stop and pick as pure functions; one real probe on a tiny Llama."""

from __future__ import annotations

import math

import pytest

from loratune.anatomy.targets import TargetSpec
from loratune.budget import AdapterSpec
from loratune.errors import ConfigError, DataError
from loratune.measure.lr_probe import diverging, lr_schedule, pick_lr, probe_learning_rate, smooth
from loratune.measure.lr_probe_plot import ascii_curve, save_png
from loratune.trial import TrainSettings


# ---------------------------------------------------------------- pure parts
def test_the_schedule_is_geometric_from_min_to_max():
    lrs = lr_schedule(60, 1e-5, 1e-1)
    assert len(lrs) == 60 and lrs[0] == 1e-5 and lrs[-1] == pytest.approx(1e-1, rel=1e-12)
    factor = (1e-1 / 1e-5) ** (1 / 59)  # 4 decades in 59 equal factors: ×1.169 per step
    assert all(b / a == pytest.approx(factor, rel=1e-12) for a, b in zip(lrs, lrs[1:], strict=False))
    assert all(1e-5 <= lr <= 1e-1 * (1 + 1e-12) for lr in lrs)
    assert lr_schedule(3, 1e-4, 1e-2) == pytest.approx([1e-4, 1e-3, 1e-2])


@pytest.mark.parametrize(
    ("steps", "lo", "hi"), [(1, 1e-5, 1e-1), (60, 1e-1, 1e-5), (60, 0.0, 1e-1), (60, 1e-5, math.inf)]
)
def test_a_schedule_that_means_nothing_is_refused(steps, lo, hi):
    with pytest.raises(ConfigError):
        lr_schedule(steps, lo, hi)


def test_smoothing_is_a_bias_corrected_ema():
    # β = 0.5 by hand: EMA 0.5, 1.25, 2.125; ÷ (1 − 0.5^k) = 0.5, 0.75, 0.875 → 1, 1.6667, 2.4286
    assert smooth([1.0, 2.0, 3.0], beta=0.5) == pytest.approx([1.0, 5 / 3, 2.125 / 0.875])
    assert smooth([2.5] * 7) == pytest.approx([2.5] * 7)  # no drift towards 0 at the start


def test_diverging_is_four_times_the_minimum_or_not_finite():
    assert not diverging([3.0, 2.0, 8.0]) and diverging([3.0, 2.0, 8.1])
    assert diverging([3.0, math.nan]) and diverging([3.0, math.inf]) and not diverging([])


def _u_curve(lrs: list[float], best: float) -> list[float]:
    """A loss that falls, bottoms out at ``best`` and blows up past it (log-LR parabola)."""
    return [3.0 + (math.log10(lr) - math.log10(best)) ** 2 for lr in lrs]


def test_the_pick_is_the_minimum_lr_over_ten():
    lrs = lr_schedule(60)
    i = 44
    loss = _u_curve(lrs, lrs[i])
    lr, reason = pick_lr(lrs, loss)
    assert lr == float(f"{lrs[i] / 10:.2g}")  # 8.23e-3 / 10 → 8.2e-4
    assert f"{lrs[i]:.2e}" in reason and "step 45 of 60" in reason and "÷ 10" in reason


def test_the_first_tenth_of_the_curve_is_ignored():
    lrs = lr_schedule(60)
    loss = _u_curve(lrs, lrs[40])
    loss[2] = 0.1  # an early outlier (EMA over two batches) below everything
    assert pick_lr(lrs, loss)[0] == float(f"{lrs[40] / 10:.2g}")
    loss[6] = 0.1  # step 7 of 60 is past the first 10 %: it counts
    assert pick_lr(lrs, loss)[0] == float(f"{max(lrs[6] / 10, lrs[0]):.2g}")


def test_a_curve_still_falling_and_one_at_the_bottom_say_so():
    lrs = lr_schedule(30, 1e-4, 1e-2)
    falling = [5.0 - i * 0.1 for i in range(30)]
    lr, reason = pick_lr(lrs, falling)
    assert lr == pytest.approx(1e-3) and "still falling" in reason
    rising = [3.0 + i * 0.1 for i in range(30)]
    lr, reason = pick_lr(lrs, rising)
    assert lr == 1e-4 and "held at the lowest LR tried" in reason  # min at step 4 (after the skip): /10 < lrs[0]


def test_a_curve_without_points_cannot_be_read():
    with pytest.raises(DataError):
        pick_lr([1e-3, 1e-2], [3.0, math.nan])


def test_the_terminal_plot_marks_points_and_the_chosen_lr():
    lrs = lr_schedule(40)
    loss = _u_curve(lrs, lrs[30])
    lines = ascii_curve(lrs, smooth(loss), 1e-3, width=40, height=8)
    assert len(lines) == 8 + 3  # rows, axis, decade labels, the chosen marker
    assert all("*" in row or "^" in row or "|" in row for row in lines[:8])
    assert "1e-5" in lines[9] and "1e-1" in lines[9] and lines[10].strip() == "^ 1.00e-03"


# ---------------------------------------------------------------- one real probe on a tiny model
SETTINGS = TrainSettings(batch_size=8, max_length=64, compute_dtype="fp32", warmup_ratio=0.0)


def _spec() -> AdapterSpec:
    return AdapterSpec(TargetSpec(("q_proj", "v_proj")), r=4, alpha=8.0, dropout=0.0)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, [type(m) for m in model.modules()]


def test_a_probe_runs_the_schedule_picks_from_its_curve_and_leaves_the_base_alone(llama_runner, qa_examples):
    base = llama_runner.model
    weights, kinds = _snapshot(base)
    seen: list[tuple[int, float, float]] = []
    probe = probe_learning_rate(
        llama_runner,
        _spec(),
        SETTINGS,
        qa_examples(64),
        steps=20,
        min_lr=1e-4,
        max_lr=1e-1,
        on_step=lambda *a: seen.append(a),
    )
    assert probe.lrs == pytest.approx(lr_schedule(20, 1e-4, 1e-1)[: len(probe.lrs)])
    assert [s for s, _, _ in seen] == list(range(1, len(probe.lrs) + 1)) and len(probe.losses) == len(probe.lrs)
    assert probe.smoothed == pytest.approx(smooth(probe.losses))
    assert (probe.lr, probe.reason.split("; stopped")[0]) == pick_lr(probe.lrs, probe.smoothed)
    assert min(probe.losses) < probe.losses[0]  # the adapter learned something on the way up
    assert probe.seconds > 0 and probe.to_dict()["planned_steps"] == 20
    # the runner's base model is exactly as it was: same weights, no adapter module left, still frozen
    after, after_kinds = _snapshot(base)
    assert after.keys() == weights.keys() and all(after[k].equal(weights[k]) for k in weights)
    assert after_kinds == kinds and not any(p.requires_grad for p in base.parameters())
    assert not hasattr(base, "peft_config")


def test_a_diverging_probe_stops_early(llama_runner, qa_examples):
    # A tiny model's loss saturates at ln(vocab) instead of climbing 4×; an LR that overflows the weights
    # makes the loss NaN, which stops the run as divergence does.
    no_clip = TrainSettings(batch_size=8, max_length=64, compute_dtype="fp32", max_grad_norm=0.0)
    probe = probe_learning_rate(llama_runner, _spec(), no_clip, qa_examples(64), steps=30, min_lr=1e-3, max_lr=1e30)
    assert probe.stopped_early and len(probe.lrs) < 30 and not math.isfinite(probe.losses[-1])
    assert diverging(probe.smoothed) and not any(diverging(probe.smoothed[:k]) for k in range(1, len(probe.lrs)))
    assert "diverged" in probe.reason and probe.to_dict()["losses"][-1] is None
    assert probe.lr < probe.lrs[-1]  # read off the finite part of the curve


def test_the_png_is_written(llama_runner, qa_examples, tmp_path):
    probe = probe_learning_rate(llama_runner, _spec(), SETTINGS, qa_examples(32), steps=10, min_lr=1e-4, max_lr=1e-1)
    save_png(probe, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_probe_arguments_are_config_errors(llama_runner, qa_examples):
    for kw in ({"steps": 5}, {"steps": 500}, {"min_lr": 1e-1, "max_lr": 1e-2}):
        with pytest.raises(ConfigError):
            probe_learning_rate(llama_runner, _spec(), SETTINGS, qa_examples(8), **kw)
