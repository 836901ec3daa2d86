"""Classification on what the pipeline already has: trait predictions, colour classes, a metadata
audit and cross-collection clones (issue #18). One module per job:

- `pixels`: standardized PNGs read as small arrays (every job here looks at pixels the same way);
- `traits`: kNN / zero-shot / combined trait prediction with confidences and a seeded hold-out;
- `colours`: dominant colours (k-means in CIELAB) with the background separated, and named classes;
- `audit`: per token, are the declared traits visible, is it a placeholder, is it a duplicate;
- `clones`: near-duplicate groups across collections (perceptual hash, then embedding cosine).

Heavy libraries (torch, lancedb) are imported inside the functions that need them.
"""
