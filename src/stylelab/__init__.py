"""stylelab: reproducible neural style experiments (Gatys et al. style transfer and style-guided diffusion)."""

__version__ = "0.1.0"
