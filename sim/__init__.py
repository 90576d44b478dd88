"""clove_gym.sim."""
