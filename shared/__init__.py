"""Seed-compatible import path: ``shared.models`` re-exports :mod:`killkrill.db`. No logic here."""
