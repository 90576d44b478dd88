"""clove_gym.benchmarks."""
