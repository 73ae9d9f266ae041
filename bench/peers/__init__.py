"""`make bench-peers`: Tally and Label Studio side by side on the same workload (docs/benchmarks-peers.md)."""
