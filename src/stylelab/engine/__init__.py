"""The optimisation of Part 1 and 3: VGG-19 features, the losses, colour preservation, L-BFGS, images as
tensors, and the transfer task (one step of it reads in one screen).

Imports stylelab.run and stylelab.spec.
"""
