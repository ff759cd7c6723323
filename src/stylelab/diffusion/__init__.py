"""Part 2: the guided denoising loop and its guidance function, the style-guided pipelines, the models and
their loading (with random-weight stand-ins offline), and the one step that downloads (fetch).

Imports stylelab.engine (the style losses, VGG-19, images), stylelab.run and stylelab.spec.
"""
