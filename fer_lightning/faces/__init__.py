"""Faces in frames: detectors by name, alignment and crops, track linking (batch and streaming)."""
