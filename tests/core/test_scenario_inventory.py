"""A center's inventory cut to the cards its executor has (the live scenario uses it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from suanwang.core.scenario import fit_inventory

MODELS = ("a100", "ascend-910b", "h20", "h800", "mlu370-x8")


@given(
    counts=st.lists(st.integers(0, 5000), min_size=1, max_size=len(MODELS)),
    cards=st.integers(0, 20000),
)
def test_an_inventory_is_cut_to_the_cards_there_are(counts: list[int], cards: int) -> None:
    inventory = tuple(zip(MODELS, counts, strict=False))
    got = dict(fit_inventory(inventory, cards))
    total = sum(counts)
    if total <= cards:
        assert fit_inventory(inventory, cards) == inventory
        return
    assert sum(got.values()) == cards  # every card used, none more
    assert all(0 < got[m] <= n for m, n in inventory if m in got)
    models = [m for m, n in inventory if n > 0]
    if cards >= len(models):
        assert set(got) == set(models)  # every model keeps a card
    for m, n in inventory:  # in proportion, but for the card each model may keep
        assert abs(got.get(m, 0) - n * cards / total) <= len(inventory)
