"""Batch attribution over a whole dataset: shards, a Parquet index and a manifest; resumable.

* :mod:`explain.batch.run`: the local engine, :func:`attribute_dataset`.
* :mod:`explain.batch.sources`: arrays, memory-mapped files and image folders read shard by shard.
* :mod:`explain.batch.index`: the per-example Parquet index.
* :mod:`explain.batch.devices`: each compiled call split over the local devices.
"""

from explain.batch.index import INDEX
from explain.batch.run import FORMAT, MANIFEST, BatchRun, attribute_dataset, attribute_shard, shard_path

__all__ = ["FORMAT", "INDEX", "MANIFEST", "BatchRun", "attribute_dataset", "attribute_shard", "shard_path"]
