import numpy as np

from worker.store import Interaction, UserState
from worker.user_vector import encoder_inputs


def test_inputs_are_padded_to_the_window_and_skip_unknown_items() -> None:
    state = UserState(
        "u1",
        history=[
            Interaction("a", "click", 1.0, 100.0),
            Interaction("missing", "click", 1.0, 150.0),
            Interaction("b", "dislike", -2.0, 200.0),
        ],
    )
    vectors = {"a": np.array([1, 0], np.float32), "b": np.array([0, 1], np.float32)}
    vecs, weights, ages = encoder_inputs([state], vectors, window=4, dim=2)
    assert vecs.shape == (1, 4, 2) and weights.shape == ages.shape == (1, 4)
    np.testing.assert_array_equal(vecs[0, :2], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(weights[0], [1.0, -2.0, 0.0, 0.0])
    # Ages count from the user's latest interaction, so historical replays do not underflow.
    np.testing.assert_array_equal(ages[0, :2], [100.0, 0.0])
