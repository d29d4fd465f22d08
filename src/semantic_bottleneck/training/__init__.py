"""Training: the testbed diffusion trainer, its datasets and the nPR monitor."""
