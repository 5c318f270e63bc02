"""The machinery around a fit: callbacks, loggers, atomic checkpoints, SLURM."""
