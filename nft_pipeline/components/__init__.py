"""Trait components (NFT1000): the pixels each trait paints, separated from a collection's images.

`extract_components` finds them (at the art's native resolution; see `separate` for the methods),
`components_table` turns them into rows of the `components` table, `token_component_mask` locates a
component in one token's image for the training stage, and `contact_sheet` draws the largest ones.
"""

from nft_pipeline.components.grid import PixelGrid, detect_grid, to_native, to_standardized
from nft_pipeline.components.separate import (
    Component,
    ComponentConfig,
    ComponentSet,
    encode_colours,
    extract_components,
)
from nft_pipeline.components.table import (
    COMPONENT_FIELDS,
    component_rows,
    components_table,
    contact_sheet,
    decode_png,
    encode_png,
    token_component_mask,
)

__all__ = [
    "COMPONENT_FIELDS",
    "Component",
    "ComponentConfig",
    "ComponentSet",
    "PixelGrid",
    "component_rows",
    "components_table",
    "contact_sheet",
    "decode_png",
    "detect_grid",
    "encode_colours",
    "encode_png",
    "extract_components",
    "to_native",
    "to_standardized",
    "token_component_mask",
]
