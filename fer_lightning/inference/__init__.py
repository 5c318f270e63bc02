"""Running a trained model: predict on any video, evaluate a checkpoint, export it."""
