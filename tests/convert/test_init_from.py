"""`config.init` placement and its report: hand-made sources into small models (no torch needed), and
every bad input named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax.convert import init_from
from dense_jax.convert.init_from import InitError, Source


def _variables():
  """A model's variables: a trunk under `backbone/body/`, a BN kept as frozen buffers, and a head."""
  return {
      "params": {"backbone": {"body": {"conv1": {"kernel": jnp.zeros((3, 3, 3, 8))},
                                       "layer1_0": {"conv1": {"kernel": jnp.zeros((1, 1, 8, 8))}}}},
                 "head": {"kernel": jnp.zeros((8, 9)), "bias": jnp.zeros((9,))}},
      "batch_stats": {"backbone": {"body": {"bn1": {"mean": jnp.zeros((8,)), "var": jnp.ones((8,)),
                                                    "scale": jnp.ones((8,)), "bias": jnp.zeros((8,))}}}},
  }


def _trunk_file(rng):
  """A classification file's trunk as importers give it (BN affine terms in params, no prefix)."""
  arrays = {"conv1/kernel": rng.normal(size=(3, 3, 3, 8)), "layer1_0/conv1/kernel": rng.normal(size=(1, 1, 8, 8)),
            "bn1/scale": rng.normal(size=(8,)), "bn1/bias": rng.normal(size=(8,)),
            "bn1/mean": rng.normal(size=(8,)), "bn1/var": rng.uniform(0.5, 1.5, size=(8,))}
  return {k: v.astype(np.float32) for k, v in arrays.items()}


def _source(parts, unconverted=()):
  return Source("test file", parts, list(unconverted))


def test_trunk_finds_its_prefix_and_bn_buffers_load_into_batch_stats():
  rng = np.random.default_rng(0)
  trunk = _trunk_file(rng)
  variables = _variables()
  plan = init_from.place(variables, _source([trunk], ["fc.weight", "fc.bias"]), {"path": "x"})
  assert plan.prefixes == ["backbone/body/"]
  out = init_from.apply(variables, plan)
  np.testing.assert_array_equal(out["params"]["backbone"]["body"]["conv1"]["kernel"], trunk["conv1/kernel"])
  for name in ("mean", "var", "scale", "bias"):   # all four BN arrays, from params or stats of the file
    np.testing.assert_array_equal(out["batch_stats"]["backbone"]["body"]["bn1"][name], trunk[f"bn1/{name}"])
  assert plan.left_at_init == {"head/kernel": "absent from file", "head/bias": "absent from file"}
  assert set(plan.unused) == {"fc.weight", "fc.bias"}
  report = init_from.report_dict(plan)
  assert report["loaded"] == 6 and report["left_at_init_count"] == 2 and report["unused_count"] == 2
  assert "loaded 6 of 8 arrays" in report["summary"] and "2 absent from file" in report["summary"]
  np.testing.assert_array_equal(out["params"]["head"]["kernel"], 0)   # untouched
  assert out["params"]["head"]["kernel"].dtype == np.float32


def test_shape_mismatch_include_exclude_reasons():
  rng = np.random.default_rng(1)
  whole = {"backbone/body/conv1/kernel": rng.normal(size=(3, 3, 3, 8)),
           "backbone/body/layer1_0/conv1/kernel": rng.normal(size=(1, 1, 8, 8)),
           "head/kernel": rng.normal(size=(8, 91)), "head/bias": rng.normal(size=(91,))}
  plan = init_from.place(_variables(), _source([whole]), {"path": "x", "exclude": "layer1_"})
  assert plan.prefixes == [""]
  assert plan.left_at_init["head/kernel"] == "shape (8, 91) in file vs (8, 9) here"
  assert plan.left_at_init["backbone/body/layer1_0/conv1/kernel"] == "excluded by init.exclude"
  assert plan.left_at_init["backbone/body/bn1/mean"] == "absent from file"
  assert plan.unused["head/kernel"] == "shape differs from head/kernel"
  assert sorted(plan.loaded) == ["backbone/body/conv1/kernel"]
  plan = init_from.place(_variables(), _source([whole]), {"path": "x", "include": "^backbone/body/conv1/"})
  assert plan.left_at_init["backbone/body/layer1_0/conv1/kernel"] == "not matched by init.include"


def test_bad_input_is_named():
  rng = np.random.default_rng(2)
  variables = _variables()
  with pytest.raises(InitError, match=r"config.init.include: .*matches none"):
    init_from.place(variables, _source([_trunk_file(rng)]), {"path": "x", "include": "^decoder/"})
  with pytest.raises(InitError, match=r"config.init.path: .*another architecture"):
    init_from.place(variables, _source([{"features/0/kernel": np.zeros((3,))}]), {"path": "x"})
  with pytest.raises(InitError, match=r"config.init.strict: .*2 left at init and 1 unused.*head/kernel: absent"):
    init_from.place(variables, _source([_trunk_file(rng)], ["fc.weight"]), {"path": "x", "strict": True})
  with pytest.raises(InitError, match=r"config.init: unknown keys \['paht'\]"):
    init_from.check_init_config({"paht": "x"})
  with pytest.raises(InitError, match=r"config.init.source: expected one of .* got 'torch'"):
    init_from.check_init_config({"path": "x", "source": "torch"})
  with pytest.raises(InitError, match=r"config.init.exclude: expected a regular expression, got '\('"):
    init_from.check_init_config({"path": "x", "exclude": "("})
  with pytest.raises(InitError, match=r"config.init.path: .*no such file or directory"):
    init_from.read_source({"path": "/nonexistent/r50.pth"})


@pytest.mark.torch
def test_unreadable_and_unknown_files(tmp_path):
  bad = tmp_path / "broken.pth"
  bad.write_bytes(b"not a torch file")
  pytest.importorskip("torch")
  with pytest.raises(InitError, match=r"config.init.path: expected a torch state-dict file .*broken.pth"):
    init_from.read_source({"path": str(bad)})
  import torch
  other = tmp_path / "other.pth"
  torch.save({"encoder.weight": torch.zeros(3)}, other)
  with pytest.raises(InitError, match=r"config.init.path: expected a state dict of torchvision's .*encoder.weight"):
    init_from.read_source({"path": str(other)})
  with pytest.raises(InitError, match=r"config.init.path: expected a torchvision state-dict file .* another suffix"):
    (tmp_path / "w.npz").write_bytes(b"")
    init_from.read_source({"path": str(tmp_path / "w.npz")})


def test_abstract_variables_plan_without_computing():
  variables = jax.eval_shape(_variables)
  plan = init_from.place(variables, _source([_trunk_file(np.random.default_rng(3))]), {"path": "x"})
  assert len(plan.loaded) == 6
