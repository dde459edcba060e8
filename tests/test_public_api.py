"""Keep ``sleeptime.__all__`` honest, as httpx does."""

from __future__ import annotations

import sleeptime


def test_all_names_exist() -> None:
    for name in sleeptime.__all__:
        assert hasattr(sleeptime, name), name


def test_every_public_name_is_in_all() -> None:
    public = {
        name
        for name, value in vars(sleeptime).items()
        if not name.startswith("_") and not isinstance(value, type(sleeptime))
    }
    assert public == set(sleeptime.__all__) - {"__version__"}


def test_all_is_sorted_and_unique() -> None:
    assert list(sleeptime.__all__) == sorted(set(sleeptime.__all__))
