"""The array literals the metrics store sends instead of Python lists (pure text)."""

from __future__ import annotations

import pytest

from killkrill.workers.metrics.store import _array_element, _floats, _id_array, _ints, _quoted


def test_floats_read_back_exactly_and_an_overflowed_sum_is_inf() -> None:
    assert _floats([0.1, -2.5, 1e300, 5e-324, float("inf")]) == "{0.1,-2.5,1e+300,5e-324,inf}"
    assert _ints([1, 20, 300]) == "{1,20,300}"


def test_quoted_keeps_a_metric_called_null_as_text() -> None:
    assert _quoted(["NULL", "up"]) == '{"NULL","up"}'


def test_array_element_escapes_quotes_and_backslashes() -> None:
    assert (
        _array_element('{"a": "x\\\\y \\"q\\""}') == '"{\\"a\\": \\"x\\\\\\\\y \\\\\\"q\\\\\\"\\"}"'
    )


def test_entry_ids_must_be_canonical() -> None:
    assert (
        _id_array(["1700000000000-0", "1700000000000-12"]) == "{1700000000000-0,1700000000000-12}"
    )
    for bad in (["5"], ["1-01"], ["1-0,2-0"], ["1-0}"], ["a-b"], [""]):
        with pytest.raises(ValueError, match="not stream entry IDs"):
            _id_array(bad)
