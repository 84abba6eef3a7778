"""experiments/benchmarks/op_profile: self times of nested trace events, op classes, a real profile and its rows."""

import jax
import jax.numpy as jnp
import pytest

from experiments.benchmarks.op_profile import hlo_op_names, op_class, profile_by_class, profile_rows, self_times


def test_self_times_subtract_nested_events_per_thread():
  # A `while` of 10 µs holding two dots (3 + 4 µs) on thread 1; an unrelated op on thread 2 that
  # overlaps in time but is not nested.
  events = [
      {"name": "while.4", "ts": 0, "dur": 10, "pid": 1, "tid": 1},
      {"name": "dot.1", "ts": 1, "dur": 3, "pid": 1, "tid": 1},
      {"name": "dot.2", "ts": 5, "dur": 4, "pid": 1, "tid": 1},
      {"name": "fusion.3", "ts": 2, "dur": 6, "pid": 1, "tid": 2},
      {"name": "copy.5", "ts": 12, "dur": 2, "pid": 1, "tid": 1},
  ]
  assert sorted(self_times(events)) == [("copy.5", 2), ("dot.1", 3), ("dot.2", 4), ("fusion.3", 6),
                                         ("while.4", 3)]


@pytest.mark.parametrize("op_name,expected", [
    ("jit(step)/jvp(Conv)/conv_general_dilated", "conv fwd"),
    ("jit(step)/transpose(jvp(Conv))/conv_general_dilated", "conv bwd"),
    ("jit(f)/transpose(jvp())/while/body/closed_call/dot_general", "matmul bwd"),
    ("jit(f)/jvp()/concatenate", "layout copies fwd"),
    ("jit(f)/reduce_sum", "reductions fwd"),
    ("jit(f)/transpose(jvp())/tanh", "elementwise bwd"),
])
def test_op_class(op_name, expected):
  assert op_class(op_name) == expected


def test_profile_of_a_conv_gradient_names_its_classes():
  x, w = jnp.ones((2, 16, 16, 32)), jnp.ones((3, 3, 32, 32))
  from dense_jax.ops.conv import conv2d  # pylint: disable=g-import-not-at-top
  f = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.tanh(conv2d(x, w, padding=1))), (0, 1)))
  compiled = f.lower(x, w).compile()
  names = hlo_op_names(compiled.as_text())
  assert any(v.endswith("conv_general_dilated") for v in names.values())
  rows = profile_by_class(compiled, (x, w), steps=1)
  assert rows["total op time"] > 0
  assert "conv fwd" in rows
  assert abs(sum(v for k, v in rows.items() if k != "total op time") - rows["total op time"]) < 1e-6
  table = profile_rows(rows)
  assert [r["op_class"] for r in table] == list(rows) and table[-1]["op_class"] == "total op time"
  assert all(set(r) == {"op_class", "ms", "share"} and r["ms"] >= 0 for r in table)
  assert table[-1]["share"] == 1.0 and abs(sum(r["share"] for r in table[:-1]) - 1.0) < 1e-6
