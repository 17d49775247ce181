from loratune.advise.fit import Knobs, fit_to_vram

NAMES = {"all": ("q", "k", "v", "o", "up", "down"), "attention": ("q", "k", "v", "o"), "qv": ("q", "v")}


def measure(k: Knobs) -> int:
    """A model with 1000 units of weights, adapter cost r·modules, activations 100 per sample."""
    weights = 250 if k.quant == "4bit" else 1000
    acts = 100 * k.micro_batch // (4 if k.grad_checkpointing else 1)
    return weights + k.r * len(k.targets) + acts


START = Knobs(16, "all", NAMES["all"], 4, 4)  # 1000 + 96 + 400 = 1496


def test_fits_without_steps():
    out = fit_to_vram(START, 1500, measure, NAMES.__getitem__)
    assert out.fits and out.steps == [] and out.total_bytes == 1496


def test_steps_follow_the_seed_order_then_give_back():
    out = fit_to_vram(START, 1200, measure, NAMES.__getitem__)
    assert [s.action for s in out.steps] == [
        "lower r",  # 16 → 8: 1448
        "lower r",  # 8 → 4: 1424
        "fewer modules",  # all → attention: 1416
        "fewer modules",  # attention → qv: 1408
        "smaller batch",  # 4 → 2: 1208
        "smaller batch",  # 2 → 1: 1108 fits
        "give back modules",  # qv → all at r=4: 1124 fits
        "give back r",  # r 4 → 16: 1196 fits
    ]
    assert [s.total_bytes for s in out.steps] == [1448, 1424, 1416, 1408, 1208, 1108, 1124, 1196]
    assert out.fits and out.knobs == Knobs(16, "all", NAMES["all"], 1, 16)


def test_checkpointing_and_4bit_come_last():
    out = fit_to_vram(START, 400, measure, NAMES.__getitem__)
    actions = [s.action for s in out.steps]
    assert actions[6:8] == ["gradient checkpointing", "4-bit base"]
    assert out.fits and out.knobs.quant == "4bit" and out.knobs.grad_checkpointing


def test_nothing_fits_names_the_minimum_vram():
    out = fit_to_vram(START, 100, measure, NAMES.__getitem__)
    assert not out.fits
    assert out.minimum_vram_bytes == out.steps[-1].total_bytes == 250 + 4 * 2 + 25
