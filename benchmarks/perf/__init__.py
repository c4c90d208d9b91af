"""Speed benchmarks (GPU via the device tool; small sizes run on CPU)."""
