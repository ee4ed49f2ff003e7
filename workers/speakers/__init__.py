"""Speaker labels for a file stream's final segments (`start.diarize`).

`embedder` turns audio into CAM++ speaker embeddings, `cluster` groups them, `labels`
ties the two to a stream's segments. Only `labels` is imported by the worker at start;
torch and the model load on the first stream that asks for labels.
"""
