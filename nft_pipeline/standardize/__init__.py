"""Standard images for NFT1000-style retrieval: one PNG per token, 512 wide, aspect kept.

The paper turns JPG, PNG, SVG and WebP into PNG of width 512 and takes one frame of GIF and
MP4. This package does that for NFT art specifically:

* pixel art (the common case) is enlarged by an integer factor with nearest-neighbour, each art
  pixel an exact k x k block, centred with a thin margin (`pixelart.py` has the rule and why);
* photographs are resized with Lanczos, JPEGs decoded at reduced scale when shrinking;
* SVG is drawn at the output width by resvg with no file or network access (`svg.py`);
* animations (GIF, animated WebP and PNG, MP4/MOV/WebM) give one frame chosen reproducibly
  from the token and a seed (`frame.py`);
* colour profiles are converted to sRGB, EXIF orientation applied, alpha kept only if used;
* bombs, truncation, endless animations, slow or crashing inputs become a row's status.

`standardize_image` is the pure bytes-to-PNG function; `standardize_many` runs it over a
process pool, writing PNGs and returning rows (`STANDARDIZED_IMAGE_FIELDS`).
"""

from nft_pipeline.standardize.collection import (
    FLAG_IDENTICAL_IMAGES,
    FLAG_NO_ATTRIBUTES,
    FLAG_TOO_FEW_IMAGES,
    collection_flags,
    contact_sheet,
)
from nft_pipeline.standardize.core import standardize_image
from nft_pipeline.standardize.model import (
    STANDARDIZED_IMAGE_FIELDS,
    ImageRow,
    Resample,
    StandardizedImage,
    StandardizeJob,
    StandardizeOutcome,
    StandardizeSettings,
    Status,
    settings_fingerprint,
)
from nft_pipeline.standardize.pool import output_path, standardize_many

__all__ = [
    "FLAG_IDENTICAL_IMAGES",
    "FLAG_NO_ATTRIBUTES",
    "FLAG_TOO_FEW_IMAGES",
    "STANDARDIZED_IMAGE_FIELDS",
    "ImageRow",
    "Resample",
    "StandardizeJob",
    "StandardizeOutcome",
    "StandardizeSettings",
    "StandardizedImage",
    "Status",
    "collection_flags",
    "contact_sheet",
    "output_path",
    "settings_fingerprint",
    "standardize_image",
    "standardize_many",
]
