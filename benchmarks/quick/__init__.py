"""Quick (CPU, about a minute each) reproductions run by `make demo`, one module per family."""
