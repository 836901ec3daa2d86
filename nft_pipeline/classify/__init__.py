"""Classification on what the pipeline already has: trait predictions, colour classes, a metadata
audit and cross-collection clones (issue #18). One module per job:

- `pixels`: standardized PNGs read as small arrays (every job here looks at pixels the same way);
- `traits`: trait prediction per exclusive type with calibrated confidences, a seeded hold-out
  and the method chosen by it; its methods in `trait_methods` (kNN, zero-shot, pools, calibration),
  `trait_pixels` (kNN's pixel features), `templates` (per-value templates), `trait_labels`; `zero_shot` reads
  the index's embeddings and embeds the prompts with its model;
- `colours`: dominant colours (k-means in CIELAB) with the background separated, and named classes;
- `audit`: per token, are the declared traits visible, is it a placeholder, is it a duplicate;
- `clones`: near-duplicate groups across collections (perceptual hash, then embedding cosine).

Heavy libraries (torch, lancedb) are imported inside the functions that need them.
"""
