"""What the model sees of an image: composited over a matte, box-resized and centre-cropped, normalised.

The one definition that training (prepared.py, data.py) and embedding for the search index
(nft_pipeline/embedding.py) share, so an indexed image reaches the model exactly as a trained one
did. A module of its own so that embedding imports neither the training loop nor its data store.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from nft_pipeline.train.model import ImagePreprocessing


def composite_over(rgba: Image.Image, matte_rgb: tuple[int, int, int]) -> Image.Image:
    """RGB of `rgba` composited over a solid matte (padding and transparent art get the matte)."""
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (*matte_rgb, 255)), rgba).convert("RGB")


def resize_and_crop(image: Image.Image, preprocessing: ImagePreprocessing) -> Image.Image:
    """CLIP's geometry with box resampling (see prepared.py's docstring)."""
    width, height = image.size
    scale = preprocessing.shortest_edge / min(width, height)
    resized = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)
    crop = preprocessing.crop_size
    left = (resized.width - crop) // 2
    top = (resized.height - crop) // 2
    return resized.crop((left, top, left + crop, top + crop))


def pixel_values(rgb: np.ndarray, preprocessing: ImagePreprocessing) -> torch.Tensor:
    """N x S x S x 3 uint8 pixels to the model's normalised N x 3 x S x S input."""
    mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std).view(1, 3, 1, 1)
    return (torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
