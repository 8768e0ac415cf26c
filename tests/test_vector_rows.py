import numpy as np
import pytest

from worker.vector_rows import stacked


def test_float32_rows_stack_in_order() -> None:
    rows = [np.arange(4, dtype=np.float32) + n for n in range(3)]
    out = stacked(rows)
    assert out.dtype == np.float32 and out.shape == (3, 4)
    np.testing.assert_array_equal(out, np.array(rows))


@pytest.mark.parametrize(
    "rows",
    [
        [np.arange(4, dtype=np.float64), np.ones(4)],  # another dtype
        [np.arange(8, dtype=np.float32)[::2], np.ones(4, dtype=np.float32)],  # strided view
        [np.ones(4, dtype=np.float32), [1.0, 2.0, 3.0, 4.0]],  # not an array
    ],
)
def test_rows_that_cannot_be_joined_as_float32_are_stacked_the_general_way(
    rows: list[np.ndarray],
) -> None:
    out = stacked(rows)
    assert out.dtype == np.float32 and out.shape == (2, 4)
    np.testing.assert_array_equal(out, np.array(rows, dtype=np.float32))


def test_no_rows_make_an_empty_array() -> None:
    assert stacked([]).shape == (0, 0)
