"""Flax modules: velocity fields, conditional flows, DDPM noise networks, VAEs, predictors.

Every module is a ``flax.linen`` module with parameters passed explicitly to ``apply``;
:func:`from_nnx` turns a Flax NNX module into the same ``(apply_fn, params)`` pair.
Helpers that belong to one model family (DDPM losses and samplers, VAE losses) stay in their
own module (:mod:`tailjax.nn.ddpm`, :mod:`tailjax.nn.vae`).
"""

from tailjax.nn.conditional_flow import ConditionalFlow, standardise_params
from tailjax.nn.nnx import from_nnx, to_nnx
from tailjax.nn.pretrained import load_params, save_params
from tailjax.nn.ddpm import ConvNoiseNet, DDPMSchedule, MLPNoiseNet, ddpm_sample, dm_loss, make_schedule
from tailjax.nn.forecasters import LSTMForecaster, MLPClassifier, MLPForecaster, StackedLSTMForecaster
from tailjax.nn.predictors import LinearPredictor, LogLinkPredictor, MLPPredictor, init_predictor
from tailjax.nn.unet import UNet
from tailjax.nn.unet1d import UNet1D
from tailjax.nn.vae import VAE, merge_params, split_params, vae_loss, vae_sample
from tailjax.nn.velocity import VelocityField, sinusoidal_embedding

__all__ = [
    "VelocityField",
    "sinusoidal_embedding",
    "ConditionalFlow",
    "standardise_params",
    "MLPNoiseNet",
    "ConvNoiseNet",
    "DDPMSchedule",
    "make_schedule",
    "dm_loss",
    "ddpm_sample",
    "UNet",
    "UNet1D",
    "StackedLSTMForecaster",
    "VAE",
    "vae_loss",
    "vae_sample",
    "split_params",
    "merge_params",
    "LSTMForecaster",
    "MLPForecaster",
    "MLPClassifier",
    "LinearPredictor",
    "MLPPredictor",
    "init_predictor",
    "from_nnx",
    "load_params",
    "save_params",
    "to_nnx",
]
