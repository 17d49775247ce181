import pytest

from loratune.advise import rules as R
from loratune.advise.tasks import TASK_CLASSES

GiB = 1024**3


@pytest.mark.parametrize(("n", "r"), [(800, 8), (3000, 16), (15000, 32), (50000, 64)])
def test_chapter_12_recommend_rank_table(n, r):
    # seed 003 §4.1 prints exactly these four lines
    assert R.recommend_rank(n) == r


@pytest.mark.parametrize(("n", "r"), [(999, 8), (1000, 16), (4999, 16), (5000, 32), (19999, 32), (20000, 64)])
def test_chapter_12_boundaries(n, r):
    assert R.recommend_rank(n) == r


def test_guide_tables():
    assert [R.rank_range_by_dataset(n) for n in (500, 1000, 1001, 10_000, 50_000, 200_000)] == [
        (4, 8), (4, 8), (8, 16), (8, 16), (16, 32), (32, 64)
    ]  # fmt: skip
    assert [R.rank_range_by_model_size(p) for p in (124e6, 1.5e9, 6.7e9, 13e9, 70e9)] == [
        (4, 16), (16, 32), (16, 32), (32, 64), (64, 128)
    ]  # fmt: skip
    assert [R.rank_range_by_vram(g * GiB) for g in (4, 8, 12, 24, 80)] == [
        (4, 8),
        (8, 16),
        (16, 32),
        (32, 64),
        (32, 64),
    ]


def test_seed_rank_reproduces_the_gpt2_example():
    # GPT-2 small, 1,000 simple-QA samples, 8 GB → r=8 (seed 000 §4.1 시나리오 1)
    ex = R.seed_rank(TASK_CLASSES["simple-qa"], 1000, 124_439_808, 8 * GiB)
    assert ex.value == 8
    assert ex.inputs["ranges"] == {
        "task": [4, 8],
        "dataset 1,000": [4, 8],
        "model 0.12 B params": [4, 16],
        "VRAM 8 GiB": [8, 16],
    }


def test_seed_rank_skips_a_conflicting_range_and_says_so():
    ex = R.seed_rank(TASK_CLASSES["expert"], 1000, 124_439_808, None)
    assert ex.value == 64  # task 32–64; the data (4–8) and model (4–16) ranges exclude it
    assert "ignored" in ex.rule and "dataset 1,000: 4–8" in ex.rule


def test_seed_rank_without_task_uses_chapter_12():
    ex = R.seed_rank(None, 15000, 6_738_415_616, None)
    assert ex.value == 32 and ex.inputs["recommend_rank"] == 32


def test_capacity_rank_two_bits_per_param():
    # GPT-2 all linear layers: 147,456 params per unit of r
    assert R.capacity_rank(1_000_000, 147_456) == 4  # ceil(1e6 / 294,912) = 4
    assert R.capacity_rank(3_000_000, 147_456) == 16  # ceil(10.17) = 11 → next power of two
    assert R.capacity_rank(0, 147_456) == 1
    assert R.literature_rank(3_000_000, 147_456, "").value == 16
    assert R.literature_rank(100_000, 147_456, "").value == 8  # never below LoRA's r=8


def test_learning_rates():
    assert [R.lr_seed(s).value for s in (4.0, 2.0, 1.0, 3.0)] == [1e-4, 2e-4, 5e-4, 1e-4]
    # tests/advise/test_lr_rule.py pins the literature's width- and step-dependent rule
    assert R.lr_literature(4096, 189, 32.0).value == 2.9e-4  # 10 · 5e-5 · (2000/4096)^0.781
    assert R.lr_literature(4096, 20, 32.0).value == 4.3e-4  # ≈ 15× full-FT LR for short runs
    assert R.lr_literature(4096, 189, 16.0).value == 5.7e-4  # × 32/16: lr·α stays put


def test_dropout_both_sides():
    assert R.dropout_seed(TASK_CLASSES["generation"]).value == 0.1
    assert R.dropout_seed(TASK_CLASSES["simple-qa"]).value == 0.05
    assert R.dropout_literature(7_000_000_000).value == 0.1
    assert R.dropout_literature(65_000_000_000).value == 0.05


def test_layers_seed_trains_the_later_half():
    # seed 003 §5: 40 layers, train_start_layer 20 → layers 20..39
    assert R.layers_seed(40, True).value == list(range(20, 40))
    assert R.layers_seed(40, False).value is None
    assert R.layers_literature(True).value is None


def test_batch_and_epochs():
    assert [R.batch_rule(n).value for n in (None, 1000, 50, 5)] == [16, 16, 4, 1]
    assert [R.epochs_rule(n, False).value for n in (800, 5000, 50_000, 500_000)] == [5, 3, 2, 1]
    assert R.epochs_rule(800, True).value == 2
    assert R.epochs_rule(800, False).alternative.value == 20  # the seed's measured run
