"""The training's component lookup holds PNG bytes and decodes a component when masking uses it.

Decoding every component up front took 23 GB for 1,000 generated collections and got the
training run killed for memory (docs/scale.md); this checks the lookup's memory stays at the
PNGs' size and that what it returns is what the table stores.
"""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pyarrow as pa
from PIL import Image

from nft_pipeline.components.table import decode_png
from nft_pipeline.train.tables import component_lookup

SIDE = 512
COMPONENTS = 200  # decoded: 200 x (512 x 512 mask + RGBA) = 262 MB


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def components_table() -> pa.Table:
    rgba = Image.new("RGBA", (SIDE, SIDE))
    rgba.paste((200, 30, 30, 255), (100, 100, 300, 260))
    mask = Image.new("1", (SIDE, SIDE))
    mask.paste(1, (100, 100, 300, 260))
    rows = [
        {
            "collection": f"c{n % 20}",
            "trait_type": "hat",
            "value": f"v{n}",
            "status": "ok" if n else "failed",
            "mask_png": png(mask) if n else None,
            "rgba_png": png(rgba) if n else None,
        }
        for n in range(COMPONENTS)
    ]
    return pa.Table.from_pylist(rows)


def test_the_lookup_keeps_pngs_and_decodes_on_use():
    table = components_table()
    tracemalloc.start()
    lookup = component_lookup(table)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10 * 2**20  # the decoded components alone would be 262 MB

    assert sorted(lookup) == [f"c{n}" for n in sorted(range(20), key=str)]
    assert lookup["c0"][("hat", "v0")] is None  # a failed component
    mask, rgba = lookup["c1"][("hat", "v1")]
    row = table.slice(1, 1).to_pylist()[0]
    assert np.array_equal(mask, decode_png(row["mask_png"], "1")) and mask.sum() == 200 * 160
    assert np.array_equal(rgba, decode_png(row["rgba_png"], "RGBA"))
    assert not mask.flags.writeable and not rgba.flags.writeable  # shared through the cache
