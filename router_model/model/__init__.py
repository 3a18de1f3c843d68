"""The model: what a task looks like to it, how it predicts, and how it is stored.

- `features`: the feature spec shared by training and serving (encode, gaps, to/from data);
- `pass_model`: the calibrated pass-probability model and its estimators;
- `compiled`: LightGBM trees compiled to native code for serving (lleaves);
- `embeddings`: the one MiniLM embedding cache (torch is imported only when it embeds);
- `lookup`: the per-(field, tier) lookup table, the simplest baseline;
- `artifact`: versioned artifacts as data, written atomically, loaded with checks.

Imports only the ground floor.
"""
