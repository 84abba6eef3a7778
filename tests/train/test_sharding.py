"""Mesh shapes, parameter-sharding rules and batch checks (no training)."""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import PartitionSpec as P

from dense_jax.train import sharding


def test_resolve_mesh_shape():
  assert sharding.resolve_mesh_shape((-1, 1), 8) == (8, 1)
  assert sharding.resolve_mesh_shape((2, -1), 8) == (2, 4)
  assert sharding.resolve_mesh_shape((4, 2), 8) == (4, 2)


@pytest.mark.parametrize("shape,match", [
    ((3, -1), "divisible by 3"), ((4, 4), "the number of devices \\(8\\)"), ((-1, -1), "two sizes"),
    ((8,), "two sizes"), ((0, 8), "two sizes")])
def test_bad_mesh_shapes(shape, match):
  with pytest.raises(ValueError, match=match):
    sharding.resolve_mesh_shape(shape, 8)


def test_make_mesh_axes():
  mesh = sharding.make_mesh((-1, 2))
  assert mesh.axis_names == ("data", "model") and dict(mesh.shape) == {"data": 4, "model": 2}
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_rules():
  mesh = sharding.make_mesh((2, 4))
  rules = ((r"head/kernel$", (None, None, None, "model")), (r"kernel$", "fsdp:data"), (".*", "replicated"))
  assert sharding.leaf_spec("params/head/kernel", (1, 1, 16, 8), rules, mesh) == P(None, None, None, "model")
  # fsdp: the largest dimension divisible by the axis size.
  assert sharding.leaf_spec("params/down0/conv0/kernel", (3, 3, 64, 128), rules, mesh) == P(None, None, None, "data")
  assert sharding.leaf_spec("opt_state/0/mu/down0/conv0/kernel", (3, 3, 64, 128), rules, mesh) == P(
      None, None, None, "data")
  # small arrays stay replicated; so does everything no rule shards
  assert sharding.leaf_spec("params/down0/conv0/kernel", (3, 3, 3, 4), rules, mesh) == P()
  assert sharding.leaf_spec("params/down0/bn0/scale", (128,), rules, mesh) == P()
  assert sharding.leaf_spec("step", (), (), mesh) == P()


@pytest.mark.parametrize("rules,match", [
    (((".*", "shard"),), "spec for"), (((".*", ("data", "batch")),), "axis names"),
    (("x",), "pairs"), ((("kernel", (None, "model")),), "entries")])
def test_bad_rules(rules, match):
  mesh = sharding.make_mesh((2, 4))
  with pytest.raises(ValueError, match=match):
    sharding.leaf_spec("params/x/kernel", (3, 3, 4, 8), rules, mesh)


def test_indivisible_explicit_spec():
  mesh = sharding.make_mesh((2, 4))
  with pytest.raises(ValueError, match="not divisible"):
    sharding.leaf_spec("params/x/kernel", (3, 3, 4, 6), (("kernel", (None, None, None, "model")),), mesh)


def test_tree_shardings_places_arrays():
  mesh = sharding.make_mesh((2, 4))
  tree = {"params": {"w": jax.ShapeDtypeStruct((64, 128), jnp.float32)}, "step": jnp.zeros((), jnp.int32)}
  shardings = sharding.tree_shardings(tree, mesh, ((r"params/w", "fsdp:model"),))
  assert shardings["params"]["w"].spec == P(None, "model") and shardings["step"].spec == P()


def test_check_batch():
  mesh = sharding.make_mesh((4, 2))
  sharding.check_batch(8, mesh, (32, 32), spatial=True)
  with pytest.raises(ValueError, match="multiple of the 'data' mesh axis size 4"):
    sharding.check_batch(6, mesh)
  with pytest.raises(ValueError, match="height 33 must be divisible"):
    sharding.check_batch(8, mesh, (33, 32), spatial=True)
