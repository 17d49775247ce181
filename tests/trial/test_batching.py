import random

from loratune.data import IGNORE_INDEX, TokenizedExample
from loratune.trial.batching import collate, length_grouped_batches, padding_fraction


def _examples(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(5, 200)
        out.append(TokenizedExample(list(range(2, k + 2)), [IGNORE_INDEX] * (k // 2) + list(range(k // 2 + 2, k + 2))))
    return out


def test_every_example_once_and_longest_batch_first():
    ex = _examples(203)
    batches = length_grouped_batches(ex, 8, seed=1)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(203))
    longest = max(len(e.input_ids) for e in ex)
    assert max(len(ex[i].input_ids) for i in batches[0]) == longest


def test_length_grouping_wastes_far_less_padding_than_random_batches():
    ex = _examples(400)
    grouped = [collate([ex[i] for i in b], 512, 0) for b in length_grouped_batches(ex, 8, seed=0)]
    order = list(range(400))
    random.Random(0).shuffle(order)
    plain = [collate([ex[i] for i in order[j : j + 8]], 512, 0) for j in range(0, 400, 8)]
    # Lengths are uniform on 5..200: random batches of 8 pad ~40 %; sorted groups only a few %.
    assert padding_fraction(plain) > 0.3
    assert padding_fraction(grouped) < 0.05


def test_collate_pads_labels_with_ignore_and_counts_tokens():
    a = TokenizedExample([5, 6, 7, 8], [IGNORE_INDEX, IGNORE_INDEX, 7, 8])
    b = TokenizedExample([5, 6], [IGNORE_INDEX, 6])
    batch = collate([a, b], 512, pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8], [5, 6, 0, 0]]
    assert batch.labels.tolist() == [[-100, -100, 7, 8], [-100, 6, -100, -100]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.tokens == 6
    assert batch.label_tokens == 3  # 7, 8 and 6 (labels at position 0 never count after the shift)
    same = collate([a, a], 512, pad_id=0)
    assert same.attention_mask is None  # no padding → no mask, SDPA's fast path


def test_collate_truncates_to_max_length():
    a = TokenizedExample(list(range(10)), list(range(10)))
    batch = collate([a], 4, pad_id=0)
    assert batch.input_ids.shape == (1, 4)
