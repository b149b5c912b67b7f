"""The suite's shared machinery, one module per concern: frameworks (imports and precision), backends
(devices, synchronisation, memory), profiles (sizes and timing budgets), opspec (ops as data), parity
(checks against float64), run (one prepared benchmark), suite (asv class factory), facts (what ran)."""
