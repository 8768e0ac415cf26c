import numpy as np

from worker.store import Interaction, UserState
from worker.user_vector import encoder_inputs


def test_inputs_are_padded_to_the_longest_history_and_skip_unknown_items() -> None:
    state = UserState(
        "u1",
        history=[
            Interaction("a", "click", 1.0, 100.0),
            Interaction("missing", "click", 1.0, 150.0),
            Interaction("b", "dislike", -2.0, 200.0),
        ],
    )
    vectors = {"a": np.array([1, 0], np.float32), "b": np.array([0, 1], np.float32)}
    short = UserState("u2", history=[Interaction("b", "click", 1.0, 50.0)])
    vecs, weights, ages = encoder_inputs([state, short], vectors, window=4, dim=2)
    assert vecs.shape == (2, 2, 2) and weights.shape == ages.shape == (2, 2)
    np.testing.assert_array_equal(vecs[0], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(weights, [[1.0, -2.0], [1.0, 0.0]])
    # Ages count from the user's latest interaction, so historical replays do not underflow.
    np.testing.assert_array_equal(ages[0, :2], [100.0, 0.0])


def test_inputs_keep_only_the_latest_window_and_stay_non_empty() -> None:
    history = [Interaction(str(n), "click", 1.0, float(n)) for n in range(5)]
    vectors = {str(n): np.array([n, 1], np.float32) for n in range(5)}
    vecs, weights, _ = encoder_inputs([UserState("u", history=history)], vectors, window=3, dim=2)
    np.testing.assert_array_equal(vecs[0, :, 0], [2, 3, 4])
    nothing, weights, _ = encoder_inputs([UserState("new")], vectors, window=3, dim=2)
    assert nothing.shape == (1, 1, 2) and weights.tolist() == [[0.0]]
