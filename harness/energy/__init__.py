"""Energy: traces from power monitors and counters, the ChamNet protocol, energy per inference."""
