"""Training: the trainer (REPA alignment, nPR monitor, torchrun), its recipes, data and run records.

Modules: `config` (TrainConfig), `trainer` (train, train_step), `recipes` (REPA-B/2 and its
testbed scale), `repa` (projection loss, target encoders), `objectives` (DDPM and linear-path
losses, limited timestep sets), `monitor` (statistics of c, JSONL log), `data` (digits),
`imagenet` (preparation and latent dataset), `distributed` (torchrun), `runs` (provenance,
data/runs), `curves` (the training pages' data), `cli` (`semantic-bottleneck train ...`).
"""
