"""The README's checkable statements stay true: the main job's step count and batch are the quick
config's, the zoo recipe and table are the zoo config's, every model it names is registered, and its
`_narrow` claim matches the registry."""

import importlib.util
import pathlib
import re

import pytest

from dense_jax import models

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text()


def _experiment(name: str):
  spec = importlib.util.spec_from_file_location(f"_readme_{name}", REPO_ROOT / "experiments" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _zoo_paragraph() -> str:
  start = README.index("## Model zoo")
  return README[start:README.index("```", start)]


def _expand(names: str) -> list[str]:
  """`fcn_resnet50/101` -> fcn_resnet50, fcn_resnet101 (the README's shorthand)."""
  head, *alternatives = names.split("/")
  stem = re.sub(r"\d+$", "", head)
  return [head] + [stem + alt for alt in alternatives]


def test_main_job_steps_and_batch_are_the_quick_configs():
  config = _experiment("unet_dense_shapes").get_config("quick")
  match = re.search(r"measured: (\d+) steps of\s+batch (\d+),", README)
  assert match, "the README's main-job sentence changed: update this test with it"
  assert (int(match[1]), int(match[2])) == (config.total_steps, config.batch_size)


def test_zoo_recipe_matches_the_zoo_config():
  config = _experiment("zoo_dense_shapes").get_config("quick")
  paragraph = " ".join(_zoo_paragraph().split())
  recipe = re.search(r"batch (\d+), (\d+) steps, `([\w/]+)`", paragraph)
  assert recipe, paragraph
  assert (int(recipe[1]), int(recipe[2]), recipe[3]) == (config.batch_size, config.total_steps,
                                                          config.dataset.name)
  table_steps = set(re.findall(r"^\| `\w+` \|.*\| (\d+) \| [\d.]+ \| [\d.]+ \|$", README, re.M))
  assert table_steps == {str(config.total_steps)}


def test_models_named_in_the_zoo_section_exist_and_the_narrow_claim_holds():
  available = set(models.available_models())
  paragraph = " ".join(_zoo_paragraph().split())
  listed = paragraph[paragraph.index("):") + 2:paragraph.index(";")]
  named = [name for chunk in re.findall(r"`([\w/]+)`", listed) for name in _expand(chunk)]
  assert len(named) >= 13 and set(named) <= available, sorted(set(named) - available)
  without = re.search(r"each has a `_narrow` variant for CPU except (.*?);", paragraph)
  assert without, paragraph
  exceptions = set(re.findall(r"`(\w+)`", without[1]))
  for name in named:
    assert (f"{name}_narrow" in available) == (name not in exceptions), name
  table = re.findall(r"^\| `(\w+)` \|", README, re.M)
  assert table and set(table) <= available, sorted(set(table) - available)


@pytest.mark.parametrize("key", ["total_steps", "stop_at_step", "eval_every", "mesh_shape"])
def test_free_keys_the_readme_names_are_free(key):
  from dense_jax.train import workdir
  assert key in README and key in workdir.FREE_KEYS
