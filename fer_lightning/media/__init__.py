"""Media I/O: decoding video (decord, image sequences) and writing face videos."""
