"""How a student is made: the distillation loop, its losses and data, the gender mitigations, models, optimiser."""
