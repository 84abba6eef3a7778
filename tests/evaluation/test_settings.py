"""`EvalSettings`: the defaults the command line shows, normalised sizes and scales, bad values named."""

import dataclasses

import pytest

from dense_jax.evaluation.settings import DEFAULT_SCALES, MODES, EvalSettings


def test_defaults_and_normalisation():
  s = EvalSettings()
  assert (s.mode, s.window, s.margin, s.flip, s.multiscale_base, s.scales) == (
      "whole", "hann", 0, True, "whole", DEFAULT_SCALES)
  assert s.write and s.verbose and s.num_figures == 0 and not s.tiled
  s = EvalSettings(image_size=[48, 64], tile=32, stride=[8, 8], scales=[1, 2])
  assert s.image_size == (48, 64) and s.tile == (32, 32) and s.stride == (8, 8) and s.scales == (1.0, 2.0)
  assert EvalSettings(mode="sliding").tiled and EvalSettings(mode="multiscale", multiscale_base="sliding").tiled
  assert MODES == ("whole", "sliding", "multiscale")
  with pytest.raises(dataclasses.FrozenInstanceError):
    s.mode = "sliding"


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="tiled"), "mode: expected one of"),
    (dict(multiscale_base="multiscale"), "multiscale_base: expected one of"),
    (dict(batch_size=0), "batch_size: expected an int >= 1"),
    (dict(batch_size=True), "batch_size"),
    (dict(image_size=(3, 4, 5)), "image_size"),
    (dict(tile=0), "tile"),
])
def test_bad_values_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    EvalSettings(**kwargs)


def test_from_kwargs_replaces_fields_and_refuses_unknown_ones():
  base = EvalSettings(mode="sliding", margin=2)
  assert EvalSettings.from_kwargs(base, margin=3) == EvalSettings(mode="sliding", margin=3)
  assert EvalSettings.from_kwargs(None, mode="multiscale") == EvalSettings(mode="multiscale")
  assert EvalSettings.from_kwargs() == EvalSettings()
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['tiles'\]"):
    EvalSettings.from_kwargs(base, tiles=3)
