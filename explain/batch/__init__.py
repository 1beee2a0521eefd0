"""Batch attribution over a whole dataset: shards, a Parquet index and a manifest; resumable.

* :mod:`explain.batch.run`: :func:`attribute_dataset`, the driver and the local engine.
* :mod:`explain.batch.ray_engine`: the same shards computed by Ray Data workers (``engine="ray"``;
  imported only then: Ray is an optional extra).
* :mod:`explain.batch.sources`: arrays, memory-mapped files and image folders read shard by shard.
* :mod:`explain.batch.index`: the per-example Parquet index.
* :mod:`explain.batch.heatmaps`: optional PNG heatmaps, one per row.
* :mod:`explain.batch.devices`: each compiled call split over the local devices.
"""

from explain.batch.index import INDEX
from explain.batch.run import FORMAT, MANIFEST, BatchRun, attribute_dataset, attribute_shard, shard_path

__all__ = ["FORMAT", "INDEX", "MANIFEST", "BatchRun", "attribute_dataset", "attribute_shard", "shard_path"]
