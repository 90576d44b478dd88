"""clove_gym.runtime."""
