import pytest
import torch

from loratune.trial.speed import ThreadTuner, choose_attention, cpu_has_fast_bf16, resolve_compute_dtype


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _drive(tuner, seconds_per_1k_tokens, steps):
    """Run ``steps`` fake steps of 1,000 tokens; step time depends on the thread count in force."""
    for _ in range(steps):
        tuner.before_step()
        tuner.after_step(1000, seconds_per_1k_tokens[torch.get_num_threads()])


def test_tuner_moves_to_the_faster_thread_count_and_probes_again_later(restore_threads):
    torch.set_num_threads(2)
    tuner = ThreadTuner((2, 1), start=2, probe=2, every=10)
    # A busy machine: 2 threads take 4 s per 1k tokens, 1 thread 1.5 s.
    _drive(tuner, {2: 4.0, 1: 1.5}, 6)  # 2 plain steps, then 2 probes with 2 threads and 2 with 1
    assert torch.get_num_threads() == 1
    assert tuner.trace == [(0, 2), (6, 1)]
    # The other process finishes: 2 threads become faster; the next probe (step 16) finds it.
    _drive(tuner, {2: 0.7, 1: 1.5}, 14)
    assert torch.get_num_threads() == 2
    assert tuner.trace[-1] == (20, 2)


def test_tuner_is_off_when_threads_are_fixed(monkeypatch):
    monkeypatch.setenv("LORATUNE_THREADS", "2")
    assert ThreadTuner.for_this_machine() is None


def test_attention_and_dtype_policies():
    assert choose_attention(70, "cpu") == "eager"
    assert choose_attention(1024, "cpu") == "sdpa"
    assert choose_attention(70, "cuda") == "sdpa"  # SDPA on CUDA (issue #12)
    assert resolve_compute_dtype("fp32", "cpu") == "fp32"
    assert resolve_compute_dtype("auto", "cpu") == ("bf16" if cpu_has_fast_bf16() else "fp32")
