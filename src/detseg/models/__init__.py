"""Models: one protocol (detseg.models.base), builders in detseg.models.zoo."""
