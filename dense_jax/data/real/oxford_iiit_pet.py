"""Oxford-IIIT Pet foreground segmentation ('oxford_iiit_pet') from the extracted official archives.

Where to get the files (download them yourself):
  https://www.robots.ox.ac.uk/~vgg/data/pets/  ->  images.tar.gz (755 MB), annotations.tar.gz (18 MB)

Manual directory (`data_dir`; default `$DENSE_JAX_DATA_DIR/oxford_iiit_pet`, else
`~/dense_jax_data/oxford_iiit_pet`), i.e. both archives extracted there:
  images/Abyssinian_1.jpg ...
  annotations/trimaps/Abyssinian_1.png ...
  annotations/trainval.txt, annotations/test.txt    lines "<name> <class id> <species> <breed id>"
The TFDS catalog's `oxford_iiit_pet` downloads the archives itself, so it cannot run offline; this
source reads the files directly (nothing to prepare).

Splits: train = trainval.txt (3680 images), test = test.txt (3669), in the order of the list files.
Labels (`semantic`, int32) from the trimap: 1 (pet) -> 1, 2 (background) -> 0, 3 (the uncertain border
band) -> 255, ignored.
Bad input: a trimap of another size than its image, with values other than 1, 2, 3 or not
single-channel raises BadLabelError naming the file; a damaged image or trimap UnreadableFileError.
"""

from __future__ import annotations

import numpy as np

from dense_jax.data.real import _common
from dense_jax.data.sources import DatasetInfo, register_source

CLASS_NAMES = ("background", "pet")
_LISTS = {"train": "trainval.txt", "test": "test.txt"}
_TABLE = _common.lookup_table({1: 1, 2: 0, 3: 255})

INFO = DatasetInfo(
    name="oxford_iiit_pet", num_classes=2, class_names=CLASS_NAMES, keys=("image", "semantic"),
    splits=("train", "test"),
    description=("Oxford-IIIT Pet trimaps as pet/background, 3680 trainval / 3669 test. Extract images.tar.gz "
                 "and annotations.tar.gz (robots.ox.ac.uk/~vgg/data/pets) into "
                 "$DENSE_JAX_DATA_DIR/oxford_iiit_pet."))


class OxfordIiitPetSource:
  """Random access to a split: {'image': uint8 (H, W, 3), 'semantic': int32 (H, W)}."""

  def __init__(self, split: str, data_dir=None):
    root = _common.resolve_data_dir("oxford_iiit_pet", data_dir)
    self._files = _common.Files("oxford_iiit_pet", split, __name__)
    names = _common.require(root / "annotations" / _LISTS[split], "the extracted annotations.tar.gz",
                            "oxford_iiit_pet", __name__)
    self._images = _common.require(root / "images", "the extracted images.tar.gz", "oxford_iiit_pet",
                                   __name__)
    self._trimaps = _common.require(root / "annotations" / "trimaps", "the extracted annotations.tar.gz",
                                    "oxford_iiit_pet", __name__)
    self._names = [line.split()[0] for line in names.read_text().splitlines()
                   if line.strip() and not line.startswith("#")]

  def __len__(self) -> int:
    return len(self._names)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    name = self._names[index]
    # A few images are PNG or CMYK inside: PIL handles them.
    image = self._files.read(_common.read_rgb, self._images / f"{name}.jpg", f"example {name}")
    trimap = self._files.read(_common.read_label_png, self._trimaps / f"{name}.png", f"example {name}")
    self._files.check_label(trimap, image.shape, (1, 2, 3), self._trimaps / f"{name}.png", f"example {name}",
                            "trimap values (1 pet, 2 background, 3 border)")
    return {"image": image, "semantic": _TABLE[trimap]}


make_source = OxfordIiitPetSource

register_source(INFO, make_source)
