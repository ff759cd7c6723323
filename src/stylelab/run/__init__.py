"""How a task runs: device, precision and determinism (runtime), the step loop with progress, timing and
divergence checks (runner), checkpoints and their resumption, and stopping on SIGTERM.

Imports only stylelab.spec. `stopping` is torch-free, so the command line parses without torch.
"""
