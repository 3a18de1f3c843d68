"""`train.engine=dask`: the local engine's examples, model and artifact, built on a Dask
cluster for logs that do not fit one machine (cluster.py: the client; partitions.py: what each
worker does with one log partition; engine.py: the client's side)."""
