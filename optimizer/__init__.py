"""Chameleon's deciding half: reads LUTs, predicts latency, searches architectures."""
