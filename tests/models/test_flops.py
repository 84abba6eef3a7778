"""Parameter counting and XLA FLOPs, and the `python -m dense_jax.models.summary` command."""

import flax.linen as nn
import jax.numpy as jnp

from dense_jax.models import flops, summary


class _OneConv(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return nn.Conv(16, (3, 3), padding="VALID")(x)


def test_count_params():
  tree = {"a": jnp.zeros((3, 4)), "b": {"c": jnp.zeros(5)}}
  assert flops.count_params(tree) == 17


class _OneBN(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    return nn.BatchNorm(use_running_average=not train)(x)


def test_param_counts_split_params_and_state():
  counts = flops.param_counts(_OneBN(), (1, 4, 4, 6))
  assert counts == {"params": 12, "state": 12, "total": 24}


def test_inference_flops_of_one_conv():
  # 2 FLOPs per multiply-add: 2 · (30·30 outputs) · (3·3·8 taps) · 16 channels, per image.
  got = flops.inference_flops(_OneConv(), (2, 32, 32, 8))
  expected = 2 * 30 * 30 * 3 * 3 * 8 * 16
  assert expected <= got <= 1.05 * expected


def test_summary_command_prints_a_row(capsys):
  assert summary.main(["--model", "sliding_window_narrow", "--size", "32"]) == 0
  out = capsys.readouterr().out
  assert "sliding_window_narrow" in out and "GFLOPs" in out


def test_summary_reports_bad_size(capsys):
  assert summary.main(["--model", "fcn8s_narrow", "--size", "40", "--no-flops"]) == 1
  assert "divisible by 32" in capsys.readouterr().out


def test_summary_unknown_model(capsys):
  assert summary.main(["--model", "no_such_net", "--no-flops"]) == 1
  assert "model: expected one of" in capsys.readouterr().out
