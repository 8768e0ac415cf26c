import numpy as np
import pytest

from worker.vector_rows import padded, segment_cells, stacked


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


def test_padded_rows_keep_each_rows_vectors_in_order_and_zeros_elsewhere() -> None:
    a, b = np.ones(2, dtype=np.float32), np.full(2, 2.0, dtype=np.float32)
    out = padded([[a, None, b], [], [b]], width=3, dim=2)
    assert out.shape == (3, 3, 2)
    np.testing.assert_array_equal(out[0], [[1, 1], [0, 0], [2, 2]])
    np.testing.assert_array_equal(out[1], np.zeros((3, 2)))
    np.testing.assert_array_equal(out[2], [[2, 2], [0, 0], [0, 0]])
    assert padded([[], []], width=4, dim=2).shape == (2, 4, 2)


def test_segment_cells_number_ragged_rows_laid_end_to_end() -> None:
    rows, cols = segment_cells(np.array([2, 0, 3]))
    assert rows.tolist() == [0, 0, 2, 2, 2]
    assert cols.tolist() == [0, 1, 0, 1, 2]
