"""Shared infrastructure of the pipeline that the web service (`webhooks/`) and the workers (`workers/`) both use.

Logs, metrics, the Redis connection, pipeline settings and key names, job submission with coalescing,
the retry policy, and the runtime that wires them together from config. Nothing here imports
`webhooks/` or `workers/`.
"""
