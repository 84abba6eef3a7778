"""The model registry: registration, lookup, clear errors."""

import pytest

from dense_jax.models import registry


def test_register_and_get():
  @registry.register_model("_test_model")
  def factory(num_classes=2, scale=1):
    return ("built", num_classes, scale)

  assert "_test_model" in registry.available_models()
  assert registry.get_model("_test_model", num_classes=5) == ("built", 5, 1)
  with pytest.raises(ValueError, match="bad arguments \\['widht'\\]"):
    registry.get_model("_test_model", widht=3)


def test_name_clash_is_an_error():
  registry.register_model("_test_clash")(lambda: 1)
  with pytest.raises(ValueError, match="already registered"):
    @registry.register_model("_test_clash")
    def other():
      return 2


def test_unknown_name_lists_known_and_broken_modules(monkeypatch):
  monkeypatch.setitem(registry._IMPORT_ERRORS, "dense_jax.models.broken", "SyntaxError: oops")
  with pytest.raises(ValueError, match="(?s)expected one of .*'unet'.*got 'nope'.*broken failed to import"):
    registry.get_model("nope")


@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_names(name):
  with pytest.raises(ValueError, match="non-empty string"):
    registry.register_model(name)
