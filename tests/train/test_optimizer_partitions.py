"""Fine-tuning partitions of config.optimizer: freeze, lr_multipliers, decay_norms_and_biases."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from dense_jax.train import optimizers


def cfg(**kw):
  return ml_collections.ConfigDict(dict(dict(name="sgd", learning_rate=0.01), **kw))


def tiny_params():
  """A ResNet-like param tree: the stem and layer1 of a backbone, a later layer, a head."""
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  return {
      "backbone": {
          "conv1": {"kernel": jax.random.normal(k[0], (3, 3, 3, 4))},
          "bn1": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
          "layer1_0": {"conv1": {"kernel": jax.random.normal(k[1], (1, 1, 4, 4))},
                       "bn1": {"scale": jnp.ones(4), "bias": jnp.zeros(4)}},
          "layer2_0": {"conv1": {"kernel": jax.random.normal(k[2], (3, 3, 4, 4))},
                       "bn1": {"scale": jnp.ones(4), "bias": jnp.zeros(4)}}},
      "classifier": {"kernel": jax.random.normal(k[3], (1, 1, 4, 2)), "bias": jnp.full(2, 0.5)}}


def run_steps(tx, params, steps=5, seed=1):
  state = tx.init(params)
  key = jax.random.PRNGKey(seed)
  for _ in range(steps):
    key, sub = jax.random.split(key)
    leaves, treedef = jax.tree.flatten(params)
    grads = jax.tree.unflatten(treedef, [jax.random.normal(k, p.shape) for k, p in
                                         zip(jax.random.split(sub, len(leaves)), leaves)])
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params


STEM = "^backbone/(body/)?(conv1|bn1|layer1_)"


@pytest.mark.parametrize("opt", [
    dict(name="sgd", momentum=0.9, nesterov=True, weight_decay=0.1),
    dict(name="adamw", weight_decay=0.1, grad_clip_norm=1.0),
    dict(name="adamw", weight_decay=0.1, decay_norms_and_biases=True, schedule="cosine", warmup_steps=2),
])
def test_frozen_params_are_bit_identical_after_five_steps(opt):
  params = tiny_params()
  tx, _ = optimizers.make_optimizer(cfg(learning_rate=0.1, freeze=STEM, **opt), total_steps=10)
  after = run_steps(tx, params)
  chex.assert_trees_all_equal(after["backbone"]["conv1"], params["backbone"]["conv1"])
  chex.assert_trees_all_equal(after["backbone"]["bn1"], params["backbone"]["bn1"])
  chex.assert_trees_all_equal(after["backbone"]["layer1_0"], params["backbone"]["layer1_0"])
  for leaf in jax.tree.leaves(after["backbone"]["conv1"]):    # bit-identical, not merely close
    assert leaf.tobytes() == params["backbone"]["conv1"]["kernel"].tobytes()
  moved = after["backbone"]["layer2_0"]["conv1"]["kernel"] - params["backbone"]["layer2_0"]["conv1"]["kernel"]
  assert np.all(np.abs(moved) > 0)
  assert not np.allclose(after["classifier"]["kernel"], params["classifier"]["kernel"])


def test_frozen_params_have_no_optimizer_state():
  params = tiny_params()
  tx, _ = optimizers.make_optimizer(cfg(name="adamw", freeze="^backbone/"), 10)
  sizes = sum(x.size for x in jax.tree.leaves(tx.init(params)))
  head = sum(x.size for x in jax.tree.leaves(params["classifier"]))
  assert sizes <= 2 * head + 8   # mu and nu of the head (and counts), nothing for the backbone


def test_a_0_1x_group_moves_0_1x_as_far_under_plain_sgd():
  # Two identical sub-trees with identical gradients: one at 0.1x, one at 1x; poly schedule applies.
  block = {"kernel": jnp.ones((3, 3, 2, 2)), "bias": jnp.ones(2)}
  params = {"backbone": block, "head": block}
  tx, schedule = optimizers.make_optimizer(
      cfg(learning_rate=0.5, momentum=0.0, schedule="poly", lr_multipliers=(("^backbone/", 0.1),)), 10)
  state = tx.init(params)
  start = params
  for step in range(5):
    grads = jax.tree.map(lambda p, step=step: jnp.full(p.shape, 1.0 + step), params)
    updates, state = tx.update(grads, state, params)
    one = -float(schedule(step)) * (1.0 + step)
    np.testing.assert_allclose(updates["head"]["kernel"], one, rtol=1e-6)   # the schedule still applies
    np.testing.assert_allclose(updates["backbone"]["kernel"], 0.1 * one, rtol=1e-6)
    params = optax.apply_updates(params, updates)
  for name in ("kernel", "bias"):
    np.testing.assert_allclose(params["backbone"][name] - start["backbone"][name],
                               0.1 * (params["head"][name] - start["head"][name]), rtol=1e-6)


def test_first_matching_multiplier_wins_and_freeze_wins_over_all():
  label = optimizers.label_of(cfg(freeze="conv1", lr_multipliers=(("^backbone/", 0.1), ("layer2", 3.0))))
  assert label("backbone/conv1/kernel") == optimizers.FROZEN
  assert label("backbone/layer2_0/bn1/scale") == "lr_multipliers[0]"
  assert label("classifier/kernel") == optimizers.DEFAULT
  # A dict works too (regexes without dots; ConfigDict refuses dotted keys), in its order.
  label = optimizers.label_of(cfg(lr_multipliers={"classifier": 10.0, "kernel": 2.0}))
  assert label("classifier/kernel") == "lr_multipliers[0]" and label("backbone/conv1/kernel") == "lr_multipliers[1]"


@pytest.mark.parametrize("decay_all", [False, True])
def test_decay_norms_and_biases(decay_all):
  params = {"conv": {"kernel": jnp.ones((3, 3, 2, 2)), "bias": jnp.ones(2)}, "bn": {"scale": jnp.ones(2)}}
  zeros = jax.tree.map(jnp.zeros_like, params)
  for extra in ({}, dict(lr_multipliers=(("conv", 2.0),))):    # plain chain and partitioned
    tx, _ = optimizers.make_optimizer(cfg(learning_rate=1.0, momentum=0.0, weight_decay=0.1,
                                          decay_norms_and_biases=decay_all, **extra), 10)
    updates, _ = tx.update(zeros, tx.init(params), params)
    f = 2.0 if extra else 1.0
    np.testing.assert_allclose(updates["conv"]["kernel"], -0.1 * f, rtol=1e-6)
    np.testing.assert_allclose(updates["conv"]["bias"], -0.1 * f if decay_all else 0.0, rtol=1e-6)
    np.testing.assert_allclose(updates["bn"]["scale"], -0.1 if decay_all else 0.0, rtol=1e-6)


def test_without_partitions_the_state_structure_is_unchanged():
  params = tiny_params()
  tx, _ = optimizers.make_optimizer(cfg(weight_decay=0.1, grad_clip_norm=1.0), 10)
  reference = optax.chain(optax.clip_by_global_norm(1.0),   # what make_optimizer built before partitions
                          optax.add_decayed_weights(0.1, mask=optimizers.decay_mask),
                          optax.sgd(optax.constant_schedule(0.01), momentum=0.9))
  assert (jax.tree.structure(tx.init(params)) == jax.tree.structure(reference.init(params)))


def test_grad_clip_stays_global_over_all_params():
  params = {"a": jnp.zeros(4), "b": jnp.zeros(4)}
  tx, _ = optimizers.make_optimizer(cfg(learning_rate=1.0, momentum=0.0, grad_clip_norm=1.0, freeze="^a"), 10)
  updates, _ = tx.update({"a": jnp.full(4, 10.0), "b": jnp.full(4, 10.0)}, tx.init(params), params)
  assert not np.any(updates["a"])
  np.testing.assert_allclose(float(optax.tree.norm(updates["b"])), 1.0 / np.sqrt(2), rtol=1e-6)


def test_pattern_matching_nothing_names_key_pattern_and_examples():
  shapes = jax.eval_shape(tiny_params)
  optimizers.check_param_patterns(cfg(freeze=STEM, lr_multipliers=(("^backbone/", 0.1),)), shapes)
  with pytest.raises(ValueError, match=r"config.optimizer.freeze: the pattern '\^encoder/' matches no "
                                       r"parameter .*11 paths, e.g. 'backbone/bn1/bias'.*'classifier/kernel'"):
    optimizers.check_param_patterns(cfg(freeze="^encoder/"), shapes)
  with pytest.raises(ValueError, match=r"config.optimizer.lr_multipliers\['layer9'\]: the pattern matches no "
                                       r"parameter .*'classifier/kernel'"):
    optimizers.check_param_patterns(cfg(lr_multipliers=(("^backbone/", 0.1), ("layer9", 2.0))), shapes)
  with pytest.raises(ValueError, match=r"lr_multipliers\['layer1_'\]: every parameter .* already taken"):
    optimizers.check_param_patterns(cfg(freeze=STEM, lr_multipliers=(("layer1_", 0.1),)), shapes)
  assert optimizers.partition_summary(cfg(freeze=STEM), shapes) == (
      "Optimizer partitions: frozen: 6 arrays / 140 parameters; lr ×1: 5 arrays / 162 parameters")


@pytest.mark.parametrize("kw,match", [
    (dict(freeze=3),
     r"config.optimizer.freeze: expected None or a non-empty regular expression \(str\).*got 3 \(int\)"),
    (dict(freeze="("), r"config.optimizer.freeze: '\(' is not a valid regular expression"),
    (dict(lr_multipliers=0.1),
     r"config.optimizer.lr_multipliers: expected \(regex, factor\) pairs .*got 0.1 \(float\)"),
    (dict(lr_multipliers=(("^backbone/", 0.0),)), r"lr_multipliers\['\^backbone/'\]: expected a number > 0 .*got 0.0"),
    (dict(lr_multipliers=(("^backbone/", "0.1"),)),
     r"lr_multipliers\['\^backbone/'\]: expected a number > 0 .*\(str\)"),
    (dict(lr_multipliers=(("[", 0.1),)), r"lr_multipliers\['\['\]: '\[' is not a valid regular expression"),
    (dict(lr_multipliers=((1, 0.1),)), r"lr_multipliers: expected a non-empty regular expression \(str\)"),
    (dict(decay_norms_and_biases="yes"), r"config.optimizer.decay_norms_and_biases: expected a bool, got 'yes'"),
])
def test_bad_types(kw, match):
  with pytest.raises(ValueError, match=match):
    optimizers.check_optimizer_config(cfg(**kw))


# ---- Through the trainer (the tiny U-Net of tests/train/conftest.py: down0/..., bottom/..., head/...).

def test_trainer_refuses_a_pattern_that_matches_nothing_before_compiling(tmp_path):
  from dense_jax.train import train_and_evaluate
  from dense_jax.train.loop import ConfigError
  from tests.train.conftest import tiny_config
  from tests.train.test_failures import count_compilations
  config = tiny_config(**{"optimizer.lr_multipliers": (("^backbone/", 0.1),)})
  with count_compilations() as compiled:
    with pytest.raises(ConfigError, match=r"config.optimizer.lr_multipliers\['\^backbone/'\]: the pattern "
                                          r"matches no parameter .*'bottom/bn0/bias'"):
      train_and_evaluate(config, tmp_path)
  assert not [e for e in compiled if "trace" not in e], compiled   # traced (eval_shape), nothing compiled
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_cli_reports_a_pattern_that_matches_nothing_in_one_line_with_exit_2(tmp_path):
  import os
  import subprocess
  import sys

  from tests.train.conftest import REPO_ROOT, tiny_config, write_config_file
  config_file = write_config_file(tmp_path, tiny_config(**{"optimizer.freeze": "^encoder/"}))
  proc = subprocess.run([sys.executable, "-m", "dense_jax.train", f"--config={config_file}",
                         f"--workdir={tmp_path}/run"], cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
  assert len(errors) == 1 and "config.optimizer.freeze: the pattern '^encoder/' matches no parameter" in errors[0]
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "run").exists()
