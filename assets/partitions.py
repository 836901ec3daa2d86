"""The partitioning shared by every per-collection asset: one dynamic partition per slug."""

import dagster as dg

collection_partitions = dg.DynamicPartitionsDefinition(name="collections")
