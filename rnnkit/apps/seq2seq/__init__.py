"""Sequence-to-sequence translation with attention: ``rnnkit translate make-data | train | run | eval``."""
