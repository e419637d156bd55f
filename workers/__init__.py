"""The queue side of the pipeline: coalesced per-ticket jobs on Redis, RQ workers, and the `tickets` CLI."""
