"""Record schemas shared by receivers and workers."""
