"""The ceiling server's constant answer."""

from __future__ import annotations

import msgspec
import pytest

from loadtest.ceiling import constant_body


@pytest.mark.parametrize("size", [200, 260, 1000])
def test_constant_body_is_json_of_the_asked_size(size: int) -> None:
    body = constant_body(size)
    assert len(body) == size
    assert msgspec.json.decode(body)["decision"] == "approve"


def test_a_size_below_the_shape_gives_the_bare_shape() -> None:
    assert msgspec.json.decode(constant_body(10))["pad"] == ""
