"""Corpora: adapters from each corpus's layout to video records, label alignment, subject
splits, ``data check``, and the synthetic corpus the project makes itself."""
