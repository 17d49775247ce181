import pytest

from loratune.advise.tasks import TASK_CLASSES, map_task
from loratune.errors import ConfigError


def test_five_seed_classes_with_their_ranges():
    # seed 000 §1.2 기준 1
    assert [(c.name, c.rank_range, c.rank) for c in TASK_CLASSES.values()] == [
        ("classification", (1, 4), 4),
        ("simple-qa", (4, 8), 8),
        ("complex-qa", (8, 16), 16),
        ("generation", (16, 32), 32),
        ("expert", (32, 64), 64),
    ]


@pytest.mark.parametrize(
    ("text", "cls", "matched"),
    [
        ("simple-qa", "simple-qa", "exact"),
        ("Complex QA", "complex-qa", "exact"),
        ("sentiment of tweets", "classification", "sentiment"),
        ("customer support QA", "simple-qa", "qa"),
        ("python code generation", "complex-qa", "code"),
        ("write a novel chapter", "generation", "novel"),
        ("legal contract summary", "expert", "legal"),  # most complex class wins
        ("medical diagnosis notes", "expert", "medical"),
    ],
)
def test_free_text_maps_to_a_class_and_names_the_keyword(text, cls, matched):
    m = map_task(text)
    assert (m.task.name, m.matched) == (cls, matched)
    if matched != "exact":
        assert f"matched '{matched}'" in m.describe()


def test_short_keyword_needs_a_whole_word():
    with pytest.raises(ConfigError) as e:
        map_task("qatar inventory")  # contains the keyword "qa" inside a word only
    assert "classification" in e.value.hint
