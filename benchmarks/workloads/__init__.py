"""End-to-end workloads in both frameworks with shared weights (issue 3)."""
