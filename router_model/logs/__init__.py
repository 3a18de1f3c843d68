"""Log IO: the attempt logs training reads and the generator writes, and the decision log.

- `attempts`: the Arrow schema, writers (files and hive datasets) and the checked reader;
- `validate`: the column-wise validator derived from the contract, and duplicate quarantine;
- `store`: where logs live (files, folders, globs, fsspec URLs) and their fingerprints;
- `decisions`: the service's decision log (append-only JSONL, rotated, one file a process);
- `decision_ids`: random decision ids from pooled OS bytes.

Imports only the ground floor (`router_model.contract`, `config`, `files`).
"""
