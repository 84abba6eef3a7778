"""Bad input to panoptic_merge: semantic labels outside [0, K) are a ValueError on concrete values (no
longer silently void); under jit / vmap they stay unchecked (void) and compile once."""

import chex
import jax
import numpy as np
import pytest

from dense_jax.ops.panoptic_merge import panoptic_merge

IS_STUFF = np.array([False, True, True])


def _args(semantic):
  return (np.zeros((2, 2, 4), bool), np.array([0.9, 0.8]), np.array([1, 2], np.int32), semantic, IS_STUFF)


@pytest.mark.parametrize("value", [3, 7, -1, 255])
def test_out_of_range_semantic_label(value):
  semantic = np.zeros((2, 4), np.int32)
  semantic[1, 2] = value
  with pytest.raises(ValueError, match=rf"semantic: expected labels of the 3 is_stuff entries in \[0, 3\), got "
                                       rf"{value} at index \(1, 2\) \(1 of 8 out of range.*is_stuff entry is False"):
    panoptic_merge(*_args(semantic))


def test_jax_array_labels_are_checked_too():
  with pytest.raises(ValueError, match=r"semantic: .* got 9"):
    panoptic_merge(*_args(jax.numpy.full((2, 4), 9, jax.numpy.int32)))


def test_in_range_and_traced_labels_pass():
  panoptic_merge(*_args(np.full((2, 4), 2, np.int32)))
  merge = jax.jit(chex.assert_max_traces(lambda sem: panoptic_merge(*_args(sem))["panoptic"], n=1))
  out = merge(np.full((2, 4), 9, np.int32))            # unchecked under jit: void (documented)
  np.testing.assert_array_equal(out, np.zeros((2, 4)))
  merge(np.full((2, 4), 1, np.int32))
