"""Without tensorflow_datasets / grain (an accelerator host that only benchmarks models), the models, the
tasks and the pure data modules still import, and the dataset entry points say what is missing."""

import subprocess
import sys
import textwrap


def test_models_import_without_the_dataset_stack():
  script = textwrap.dedent("""
      import sys
      for name in ("tensorflow_datasets", "tensorflow", "grain"):
        sys.modules[name] = None          # import of these now raises ModuleNotFoundError
      from dense_jax.models.registry import get_model
      import dense_jax.tasks
      from dense_jax.data import color
      get_model("multitask_narrow", tasks=("semantic", "colorization"))
      from dense_jax import data
      try:
        data.available()
      except ImportError as error:
        print("ERROR:", error)
      """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "dense_jax.data.available needs the dataset stack" in result.stdout
  assert "requirements.txt" in result.stdout
