"""The synthetic face-video corpus: its generator and its adapter."""
