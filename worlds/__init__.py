"""clove_gym.worlds: simulated environments (arrive with the worlds issue)."""
