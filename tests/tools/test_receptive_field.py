"""The per-layer receptive-field table of `dense_jax.tools.receptive_field` on small known stacks."""

import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dense_jax import nn as dj_nn
from dense_jax.nn import MaxPoolWithArgmax, MaxUnpool, Unpool
from dense_jax.ops import receptive_field, resize_bilinear
from dense_jax.tools import receptive_field as rf_tool

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


class Stack(nn.Module):
  """conv3 → max_pool 2/2 (functional) → conv3 d2 → conv3/2 → 1×1."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(4, (3, 3), padding=1, name="c1")(x)
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.Conv(4, (3, 3), padding=2, kernel_dilation=2, name="c2")(x)
    x = nn.Conv(4, (3, 3), strides=2, padding=1, name="c3")(x)
    return nn.Conv(2, (1, 1), name="head")(x)


def test_known_stack_matches_hand_computation_and_the_op():
  rows = rf_tool.layer_table(Stack(), (1, 32, 32, 3))
  assert [r.name for r in rows] == ["c1", "(max_pool)", "c2", "c3", "head"]
  # By hand: r = 1 + 2·1 = 3; + 1·1 = 4 (j 2); + 4·2 = 12; + 2·2 = 16 (j 4); + 0 = 16.
  assert [r.rf for r in rows] == [3, 4, 12, 16, 16]
  assert [r.jump for r in rows] == [1, 2, 2, 4, 4]
  assert [(r.in_hw, r.out_hw) for r in rows][2:4] == [((16, 16), (16, 16)), ((16, 16), (8, 8))]
  reference = receptive_field([(3, 1, 1), (2, 2, 1), (3, 1, 2), (3, 2, 1), (1, 1, 1)])
  assert [r.rf for r in rows] == [f.size for f in reference]
  assert rf_tool.final_receptive_field(rows) == (16, 4)
  assert rf_tool.final_receptive_field(rows, upto="c2") == (12, 2)


class Residual(nn.Module):
  """A stride-2 residual block: main path conv3/2 → conv3, shortcut 1×1/2 (a branch)."""

  @nn.compact
  def __call__(self, x, train=False):
    y = nn.Conv(4, (3, 3), strides=2, padding=1, name="a")(x)
    y = nn.Conv(4, (3, 3), padding=1, name="b")(y)
    s = nn.Conv(4, (1, 1), strides=2, name="shortcut")(x)
    return nn.Conv(2, (3, 3), padding=1, name="head")(y + s)


def test_shortcut_is_a_branch_not_composed():
  rows = rf_tool.layer_table(Residual(), (1, 16, 16, 3))
  kinds = {r.name: r.on_path for r in rows}
  assert kinds == {"a": True, "b": True, "shortcut": False, "head": True}
  # main path: 3 (j 2) → 3 + 2·2 = 7 → head 7 + 2·2 = 11; composing the 1×1/2 shortcut would give jump 4.
  assert rf_tool.final_receptive_field(rows) == (11, 2)
  assert "branch" in rf_tool.format_table(rows)


class Decoder(nn.Module):
  """argmax pool 2 → conv3 → transposed 4/2 → bed of nails ×2 → max-unpool ×2 → bilinear resize ×2."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(4, (3, 3), padding=1, name="c1")(x)
    p, idx = MaxPoolWithArgmax(2, name="pool")(x)                         # 16 -> 8
    p2, idx2 = MaxPoolWithArgmax(2, name="pool2")(p)                      # 8 -> 4
    y = nn.Conv(4, (3, 3), padding=1, name="c2")(p2)
    y = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding="SAME", name="up1")(y)   # 4 -> 8
    y = Unpool(2, "bed_of_nails", name="up2")(y)                          # 8 -> 16
    y = nn.Conv(4, (3, 3), padding=1, strides=2, name="down")(y)          # 16 -> 8
    y = MaxUnpool(2, name="up3")(y, idx, (16, 16))                        # 8 -> 16
    return resize_bilinear(y, (32, 32))                                   # 16 -> 32, inferred


def test_upsampling_divides_the_jump_and_adds_taps():
  rows = rf_tool.layer_table(Decoder(), (1, 16, 16, 3))
  table = [(r.name, r.kind, r.rf, r.jump) for r in rows]
  # c1 3 (1); pool 4 (2); pool2 6 (4); c2 6+8 = 14 (4); up1: taps ceil(4/2) = 2 -> 14 + 4 = 18 (2);
  # up2 (1 tap) 18 (1); down 18 + 2 = 20 (2); up3 20 (1); inferred bilinear ×2: 2 taps -> 21 (0.5).
  assert table == [("c1", "conv", 3, 1), ("pool", "pool", 4, 2), ("pool2", "pool", 6, 4),
                   ("c2", "conv", 14, 4), ("up1", "up", 18, 2), ("up2", "up", 18, 1),
                   ("down", "conv", 20, 2), ("up3", "up", 20, 1), ("(inferred)", "inferred-up", 21, 0.5)]


class OurModules(nn.Module):
  """dense_jax.nn's own Conv (strided, dilated) and BilinearUpsample (FCN's learned ×4)."""

  @nn.compact
  def __call__(self, x, train=False):
    x = dj_nn.Conv(4, 3, stride=2, padding=1, name="c1")(x)
    x = dj_nn.Conv(4, 3, dilation=3, padding=3, name="c2")(x)
    return dj_nn.BilinearUpsample(4, name="up")(dj_nn.Conv(4, 3, stride=2, padding=1, name="c3")(x))


def test_dense_jax_nn_modules_are_recorded():
  rows = rf_tool.layer_table(OurModules(), (1, 32, 32, 3))
  # c1 3 (2); c2 3 + 6·2 = 15 (2); c3 15 + 2·2 = 19 (4); up ×4 (kernel 8, 2 taps) 19 + 4 = 23 (1).
  assert [(r.name, r.kind, r.rf, r.jump) for r in rows] == [
      ("c1", "conv", 3, 2), ("c2", "conv", 15, 2), ("c3", "conv", 19, 4), ("up", "up", 23, 1)]


def test_erf_width_of_known_maps():
  delta = np.zeros((9, 9))
  delta[4, 4] = 1
  assert rf_tool.erf_width(delta, 0.9) == 1
  block = np.zeros((9, 9))
  block[3:6, 3:6] = 1
  assert rf_tool.erf_width(block, 1.0) == 3
  assert rf_tool.erf_width(block, 1 / 9) == 1
  assert rf_tool.erf_width(np.zeros((5, 5)), 0.5) == 0
  with pytest.raises(ValueError, match="fraction"):
    rf_tool.erf_width(block, 0.0)


def test_erf_of_a_linear_stack_lies_inside_its_receptive_field(tmp_path):
  model = Stack()
  x = rf_tool.noise_images((2, 32, 32, 3))
  variables = model.init(jax.random.key(0), jnp.asarray(x))
  erf = rf_tool.erf_map(model, variables, x)
  assert erf.shape == (32, 32) and erf.sum() == pytest.approx(1.0, abs=1e-5)
  ys, xs = np.nonzero(erf > 0)
  assert ys.max() - ys.min() + 1 <= 16 and xs.max() - xs.min() + 1 <= 16   # rf = 16
  path = rf_tool.plot_erf(erf, tmp_path / "erf.png", rf=16, title="stack")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_prints_the_table_and_writes_the_erf(tmp_path):
  out = tmp_path / "erf.png"
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, "-m", "dense_jax.tools.receptive_field", "--config",
       "experiments/receptive_field.py:quick", "--config.model.dilations=(2, 2, 2)", "--config.model.width=4",
       "--batch", "2", "--out", str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  # 2-layer front-end (5) + three 3×3 convs dilated 2 (+4 each) = 17 px.
  assert "context/ctx_conv3" in result.stdout and "receptive field 17 px" in result.stdout
  assert out.stat().st_size > 0
