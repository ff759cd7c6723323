"""How a task runs: device, precision and determinism, the step loop, checkpoints, and stopping on SIGTERM.

Imports only stylelab.spec. `stopping` is torch-free, so the command line parses without torch.
"""
