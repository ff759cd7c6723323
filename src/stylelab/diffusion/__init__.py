"""Part 2: diffusion models steered by the gradient of a style loss (classifier guidance)."""
