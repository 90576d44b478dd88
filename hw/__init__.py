"""clove_gym.hw."""
