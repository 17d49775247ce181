import math

import pytest

from loratune.errors import ConfigError
from loratune.trial import TrainSettings, TrialResult


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("learning_rate", 0.0, "learning_rate"),
        ("learning_rate", float("nan"), "learning_rate"),
        ("batch_size", 0, "batch_size"),
        ("grad_accum", -1, "grad_accum"),
        ("max_steps", 0, "max_steps"),
        ("warmup_ratio", 1.0, "warmup_ratio"),
        ("scheduler", "step", "scheduler"),
        ("compute_dtype", "fp8", "compute_dtype"),
        ("eval_every", 0, "eval_every"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(field, value, needle):
    with pytest.raises(ConfigError) as e:
        TrainSettings(**{field: value})
    assert needle in e.value.message
    assert e.value.hint


def test_settings_round_trip_and_unknown_keys():
    s = TrainSettings(learning_rate=1e-3, max_steps=5)
    assert TrainSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ConfigError, match="lr_typo"):
        TrainSettings.from_dict({"lr_typo": 1})


def test_result_json_round_trip_writes_nan_as_null():
    r = TrialResult(
        status="diverged", val_loss_before=2.5, train_loss_final=math.nan, loss_curve=[(1, 2.0), (2, math.inf)]
    )
    d = r.to_dict()
    assert d["train_loss_final"] is None
    assert d["loss_curve"] == [[1, 2.0], [2, None]]
    back = TrialResult.from_dict(d)
    assert back.status == "diverged" and back.val_loss_before == 2.5
    assert back.loss_curve[0] == (1, 2.0) and math.isnan(back.loss_curve[1][1])
    with pytest.raises(ConfigError):
        TrialResult.from_dict({"status": "exploded"})


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("learning_rate", "fast", "--lr (learning_rate) must be a number, got 'fast'"),
        ("learning_rate", math.inf, "--lr (learning_rate) must be a finite number"),
        ("learning_rate", -1.0, "--lr (learning_rate) must be greater than 0"),
        ("seed", 10**23, "--seed (seed) must be in [0, 4294967295]"),
        ("seed", -1, "--seed (seed) must be in [0, 4294967295]"),
        ("epochs", math.nan, "--epochs (epochs) must be a finite number"),
        ("epochs", 0, "--epochs (epochs) must be greater than 0"),
        ("batch_size", 2.5, "--batch-size (batch_size) must be an integer"),
        ("batch_size", True, "--batch-size (batch_size) must be an integer"),
        ("max_length", 1, "--max-length (max_length) must be at least 2"),
        ("weight_decay", -1.0, "--weight-decay (weight_decay) must be at least 0"),
        ("warmup_ratio", 2.0, "--warmup-ratio (warmup_ratio) must be in [0, 1)"),
        ("eval_batches", 0, "--eval-batches (eval_batches) must be at least 1"),
        ("max_grad_norm", math.nan, "max_grad_norm must be a finite number"),
        ("grad_checkpointing", "yes", "must be true or false"),
    ],
)
def test_every_number_is_checked_once_naming_flag_field_and_value(field, value, needle):
    with pytest.raises(ConfigError) as e:
        TrainSettings(**{field: value})
    assert needle in e.value.message, e.value.message
    assert repr(value) in e.value.message


def test_epochs_is_checked_even_when_max_steps_wins():
    with pytest.raises(ConfigError, match="epochs"):
        TrainSettings(max_steps=5, epochs=math.nan)
    assert TrainSettings(max_steps=5, epochs=1.0).max_steps == 5
