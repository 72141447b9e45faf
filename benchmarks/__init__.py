"""Side-by-side benchmark of h2mesh against other Python RPC stacks (see docs/benchmarks.md)."""
