"""Flax modules: velocity fields, conditional flows, DDPM noise networks, VAEs, predictors."""
