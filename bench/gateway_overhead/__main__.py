"""`python -m bench.gateway_overhead [loadgen]`: the bench, or (as its own subprocess) the load generator."""

from bench.gateway_overhead.run import main

main()
