"""Fixtures for the real-dataset loader tests: no network, and writers of small fake image files."""

import pathlib
import socket

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  """Any attempt to open a connection fails the test: the loaders must work from local files only."""
  def refuse(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args}")
  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)
  monkeypatch.setattr(socket, "getaddrinfo", refuse)


class Fakes:
  """Writes fake files in the layouts the datasets use."""

  @staticmethod
  def image(h: int, w: int, seed: int) -> np.ndarray:
    """A piecewise-constant RGB image (blocks survive JPEG nearly exactly, unlike noise)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(2, 2, 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, -(-h // 2), 0), -(-w // 2), 1)[:h, :w]

  @staticmethod
  def jpeg(path: pathlib.Path, array: np.ndarray) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="JPEG", quality=100, subsampling=0)
    return path

  @staticmethod
  def png(path: pathlib.Path, array: np.ndarray, palette: bool = False) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    if palette:  # like VOC's SegmentationClass: mode 'P', the stored values are palette indices
      im.putpalette([c for i in range(256) for c in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
      assert im.mode == "P"
    im.save(path, format="PNG")
    return path


@pytest.fixture
def fakes():
  return Fakes
