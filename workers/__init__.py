"""The queue side of the pipeline: RQ workers, recovery of abandoned jobs, bulk resync, and the `tickets` CLI."""
