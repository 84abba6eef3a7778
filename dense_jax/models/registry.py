"""Model registry: configs name an architecture by string, the trainer builds it with `get_model`.

    @register_model("unet")
    class UNet(nn.Module): ...

    model = get_model("unet", num_classes=9, width=16)   # -> a flax.linen Module

A registered entry is a class or a factory function; `get_model(name, **kwargs)` calls it with the
keyword arguments (a config's `model` block minus `name`). Every module in `dense_jax.models` (and in
its sub-packages) is imported on the first lookup, so a family registers itself simply by living in
this package — nobody has to edit a central list.

Contract of a registered model (what the engine, `dense_jax.evaluation` and the tasks rely on):

- a `flax.linen.Module`; the engine calls `model.apply(variables, batch["image"], train=train)` (with
  `mutable=["batch_stats"]` and a `dropout` rng when training). Images are float `(B, H, W, 3)` in
  [0, 1] as the input pipeline gives them; a model that wants another input scale (the ImageNet
  mean/std of torchvision weights) normalises inside its `__call__` (see `dense_jax.models.build`).
- It returns a dict `{task name: output}`, one entry per task it serves, named as the config's tasks
  (`config.tasks`): a semantic model returns `{"semantic": logits (B, H', W', K)}`. Auxiliary heads
  are entries too, named `<task>_aux` (FCN/DeepLab: `{"semantic": ..., "semantic_aux": ...}`); the
  task decides what to do with them (the semantic task adds `aux_weight` × their loss). Outputs that
  are not for a task (debug maps) stay in `sow("intermediates", ...)`.
- Models whose output is smaller than the input (the valid-convolution U-Net) return the centre of the
  label map; tasks crop the labels to the output's size around the centre.
- A model that needs the labels while training (a two-stage detector samples RoIs from the ground
  truth) declares the class attribute `needs_targets = True`; the engine then also passes
  `targets=<the batch dict>` when training (`model.apply(variables, images, train=True, targets=batch)`);
  initialisation, evaluation and inference call it without `targets` (give it the default None).
  `dense_jax.models.build.apply_model` is the one function that makes this call.
- Batch-norm statistics live in the `batch_stats` collection. Models take `num_classes` and, where
  they can, `dtype` (the compute dtype; parameters stay float32).
"""

from __future__ import annotations

from dense_jax._registry import NamedRegistry

_MODELS = NamedRegistry("model", "dense_jax.models", skip=(__name__,))
_IMPORT_ERRORS = _MODELS.import_errors   # module -> error, for modules that failed to import


def register_model(name: str):
  """Decorator registering a model class or factory under `name` (re-registering the same object is
  allowed, so reloading a module is harmless; a different object under a taken name is an error)."""
  return _MODELS.decorator(name)


def available_models() -> list[str]:
  """Sorted names of every registered model."""
  return _MODELS.available()


def get_model(name: str, **kwargs):
  """Builds the model registered as `name` with `kwargs`; unknown names list the known ones."""
  return _MODELS.build(name, **kwargs)
