"""The sufficient statistic: order independence, merge equals bulk, consistent counts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlfm import InvalidDataError, Statistics


@st.composite
def transitions(draw, max_states=6, max_actions=3, max_len=60):
    S = draw(st.integers(1, max_states))
    A = draw(st.integers(1, max_actions))
    n = draw(st.integers(0, max_len))
    ints = lambda hi: st.lists(st.integers(0, hi - 1), min_size=n, max_size=n)  # noqa: E731
    s, a, s2 = draw(ints(S)), draw(ints(A)), draw(ints(S))
    r = draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))  # integers: exact sums
    done = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return S, A, (np.array(s, int), np.array(a, int), np.array(r, float), np.array(s2, int),
                  np.array(done, bool))


@settings(max_examples=60, deadline=None)
@given(data=transitions(), perm_seed=st.integers(0, 2**16))
def test_order_independence_and_incremental_equals_bulk(data, perm_seed):
    S, A, arrays = data
    bulk = Statistics.from_transitions(S, A, *arrays)
    order = np.random.default_rng(perm_seed).permutation(len(arrays[0]))
    one_by_one = Statistics(S, A)
    for i in order:
        one_by_one.update(*(x[i] for x in arrays))
    assert one_by_one == bulk
    np.testing.assert_array_equal(one_by_one.transition_counts.toarray(),
                                  bulk.transition_counts.toarray())


@settings(max_examples=60, deadline=None)
@given(data=transitions(), cut=st.floats(0, 1))
def test_merge_equals_bulk(data, cut):
    S, A, arrays = data
    k = int(cut * len(arrays[0]))
    left = Statistics.from_transitions(S, A, *(x[:k] for x in arrays))
    right = Statistics.from_transitions(S, A, *(x[k:] for x in arrays))
    merged = left.merge(right)
    assert merged == Statistics.from_transitions(S, A, *arrays)
    assert left + right == merged
    assert left.n_transitions == k  # merge does not modify its operands


@settings(max_examples=60, deadline=None)
@given(data=transitions())
def test_counts_are_consistent(data):
    S, A, (s, a, r, s2, done) = data
    stats = Statistics.from_transitions(S, A, s, a, r, s2, done)
    counts = stats.transition_counts.toarray().reshape(S, A, S)
    np.testing.assert_array_equal(counts.sum(-1), stats.visits)
    assert stats.n_transitions == len(s) == stats.visits.sum()
    assert stats.terminations.sum() == done.sum() == stats.terminal_entries.sum()
    assert np.all(stats.terminations <= stats.visits)
    assert stats.n_distinct_transitions == np.count_nonzero(counts)
    np.testing.assert_allclose(stats.reward_sum.sum(), r.sum())
    assert np.all(stats.reward_std >= 0)


def test_empirical_model_convention():
    # S=3, A=2: (0,0) -> 1 twice, -> 2 once; (0,1) unvisited; 2 observed terminal.
    stats = Statistics.from_transitions(3, 2, [0, 0, 0, 1], [0, 0, 0, 1], [1.0, 3.0, 2.0, 5.0],
                                        [1, 1, 2, 2], [False, False, True, True])
    mdp = stats.empirical_mdp(horizon=4)
    np.testing.assert_allclose(mdp.P[0, 0], [0, 2 / 3, 1 / 3])
    np.testing.assert_allclose(mdp.P[0, 1], [1, 0, 0])        # unvisited: stays put
    assert mdp.R[0, 0] == pytest.approx(2.0) and mdp.R[0, 1] == 0.0
    assert mdp.terminal.tolist() == [False, False, True]
    assert np.all(mdp.P[2, :, 2] == 1) and np.all(mdp.R[2] == 0)
    assert stats.reward_std[0, 0] == pytest.approx(np.std([1.0, 3.0, 2.0]))


def test_large_state_space_memory_is_proportional_to_data():
    stats = Statistics(100_000, 4)  # a dense (S, A, S) count array would need 320 GB
    stats.add_transitions([0, 1, 2], [0, 1, 2], [1.0, 0.0, 0.0], [5, 99_999, 5])
    assert stats.n_distinct_transitions == 3
    assert stats.transition_counts.nnz == 3


@pytest.mark.parametrize("bad, message", [
    (dict(states=[0, 7]), "states out of range"),
    (dict(actions=[0, -1]), "actions out of range"),
    (dict(rewards=[0.0, np.nan]), "NaN"),
    (dict(next_states=[0]), "one length"),
    (dict(states=[0.5, 1.0]), "integers"),
])
def test_bad_transitions_are_refused(bad, message):
    args = dict(states=[0, 1], actions=[0, 1], rewards=[0.0, 1.0], next_states=[1, 0])
    args.update(bad)
    with pytest.raises(InvalidDataError, match=message):
        Statistics.from_transitions(3, 2, **args)
    with pytest.raises(InvalidDataError, match="out of range"):
        Statistics(3, 2).update(3, 0, 0.0, 0)
