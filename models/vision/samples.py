"""Offline image sources: scikit-image's bundled sample photos, and folders or zips of image files.

Nothing here touches the network: the sample photos ship inside the scikit-image wheel
(``skimage/data/*.png|jpg``), and image folders are read lazily, one file per access, so a dataset of
thousands of images never sits in memory at once.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE_NAMES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


# Sample name -> the scikit-image function, where they differ. skimage.data.cat() is chelsea() (the same
# photo, byte for byte), so the eighth sample is the left view of the Middlebury 2014 stereo pair instead
# (Scharstein et al. 2014, scikit-image's stereo_motorcycle(); a motorcycle in a workshop).
LOADERS = {"motorcycle": lambda data: data.stereo_motorcycle()[0]}


def sample_images() -> dict[str, Image.Image]:
    """scikit-image's bundled colour photos by name, as RGB PIL images (read from the installed wheel)."""
    import skimage.data

    out: dict[str, Image.Image] = {}
    for name in SAMPLE_NAMES:
        load = LOADERS.get(name, lambda data, name=name: getattr(data, name)())
        arr = np.asarray(load(skimage.data))  # (H, W, 3) uint8
        out[name] = Image.fromarray(arr).convert("RGB")
    return out


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and "__MACOSX/" not in name and base.lower().endswith(IMAGE_SUFFIXES)


class ImageFiles(Sequence[Image.Image]):
    """A folder (searched recursively) or a .zip of jpg/png/webp/bmp files, opened lazily as RGB images.

    ``len()`` is known up front (progress bars need it); ``files[i]`` decodes file i only then. Names
    are sorted so runs are reproducible.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            self._zip = False
            self.names = sorted(
                str(p.relative_to(self.path))
                for p in self.path.rglob("*")
                if p.is_file() and _is_image_name(str(p.relative_to(self.path)))
            )
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            self._zip = True
            with zipfile.ZipFile(self.path) as zf:
                self.names = sorted(n for n in zf.namelist() if not n.endswith("/") and _is_image_name(n))
        else:
            raise FileNotFoundError(f"{self.path} is neither a folder nor a .zip file")
        if not self.names:
            raise ValueError(f"no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} images in {self.path}")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Image.Image:  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]  # type: ignore[return-value]
        name = self.names[index]
        if self._zip:
            with zipfile.ZipFile(self.path) as zf:
                data = zf.read(name)
            image = Image.open(io.BytesIO(data))
        else:
            image = Image.open(self.path / name)
        with image:
            return image.convert("RGB")
