"""Balanced sampling: torchvision's counts for every mix of positives/negatives, uniform draws, both
views agree, fixed shapes under jit/vmap."""

import chex
import jax
import numpy as np
import pytest

from dense_jax.ops.sampling import balanced_sample, balanced_sample_mask


def _labels(rng, n, n_pos, n_neg):
  lab = np.full(n, -1, np.int32)
  idx = rng.permutation(n)
  lab[idx[:n_pos]] = rng.integers(1, 5, n_pos)
  lab[idx[n_pos:n_pos + n_neg]] = 0
  return lab


@pytest.mark.parametrize("n,n_pos,n_neg,size,frac", [
    (1000, 300, 600, 256, 0.5), (1000, 20, 900, 256, 0.5), (1000, 20, 100, 256, 0.5), (600, 0, 500, 512, 0.25),
    (600, 200, 0, 512, 0.25), (100, 10, 50, 256, 0.5), (0, 0, 0, 8, 0.5), (50, 0, 0, 16, 0.5)])
def test_counts_equal_torchvision_rule(n, n_pos, n_neg, size, frac):
  rng = np.random.default_rng(n + n_pos)
  labels = _labels(rng, n, n_pos, n_neg)
  key = jax.random.key(0)
  idx, is_pos, valid = balanced_sample(key, labels, size, frac)
  assert idx.shape == is_pos.shape == valid.shape == (size,)
  want_pos = min(n_pos, int(size * frac))
  want_neg = min(n_neg, size - want_pos)
  idx, is_pos, valid = map(np.asarray, (idx, is_pos, valid))
  assert is_pos.sum() == want_pos and (valid & ~is_pos).sum() == want_neg
  assert np.all(is_pos[:want_pos]) and np.all(valid[:want_pos + want_neg]) and not np.any(valid[want_pos + want_neg:])
  chosen = idx[valid]
  assert len(set(chosen)) == len(chosen)
  if n:
    assert np.all(labels[idx[is_pos]] >= 1) and np.all(labels[idx[valid & ~is_pos]] == 0)
  assert np.all(idx[~valid] == 0)
  pos_mask, neg_mask = map(np.asarray, balanced_sample_mask(key, labels, size, frac))
  np.testing.assert_array_equal(np.sort(np.nonzero(pos_mask)[0]), np.sort(idx[is_pos]))
  np.testing.assert_array_equal(np.sort(np.nonzero(neg_mask)[0]), np.sort(idx[valid & ~is_pos]))


def test_draws_are_uniform():
  labels = np.array([1] * 10 + [0] * 20 + [-1] * 5, np.int32)
  keys = jax.random.split(jax.random.key(1), 2000)
  pos, neg = jax.jit(jax.vmap(lambda k: balanced_sample_mask(k, labels, 8, 0.5)))(keys)
  freq_pos = np.asarray(pos).mean(0)[:10]  # each positive chosen with probability 4/10
  freq_neg = np.asarray(neg).mean(0)[10:30]  # each negative with 4/20
  np.testing.assert_allclose(freq_pos, 0.4, atol=0.05)
  np.testing.assert_allclose(freq_neg, 0.2, atol=0.04)
  assert not np.any(np.asarray(pos)[:, 30:]) and not np.any(np.asarray(neg)[:, 30:])


def test_batched_rows_and_single_trace():
  rng = np.random.default_rng(2)
  labels = np.stack([_labels(rng, 300, 40, 200), _labels(rng, 300, 5, 10)])

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(key, lab):
    return balanced_sample(key, lab, 64, 0.25)

  idx, is_pos, valid = run(jax.random.key(3), labels)
  assert idx.shape == (2, 64)
  assert int(is_pos[0].sum()) == 16 and int(valid[0].sum()) == 64
  assert int(is_pos[1].sum()) == 5 and int(valid[1].sum()) == 15
  run(jax.random.key(4), labels[::-1])  # new data, same shapes: no retrace
  a = run(jax.random.key(5), labels)[0]
  assert not np.array_equal(a[0], a[1])


def test_bad_input_raises():
  with pytest.raises(ValueError, match="num_samples"):
    balanced_sample(jax.random.key(0), np.zeros(5, np.int32), 0, 0.5)
  with pytest.raises(ValueError, match="positive_fraction"):
    balanced_sample_mask(jax.random.key(0), np.zeros(5, np.int32), 4, 1.5)
  with pytest.raises(ValueError, match="labels"):
    balanced_sample(jax.random.key(0), np.int32(3), 4, 0.5)
