"""Dagster asset definitions: thin wrappers that call `nft_pipeline` and describe the result."""
