"""`python -m bench.scale [loadgen | soak]`: the bench, or (as its own subprocess) one of its clients."""

from bench.scale.run import main

main()
