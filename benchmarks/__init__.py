"""mlx-torch-bench: the asv benchmark suite (ops/, workloads/) and its harness (harness/)."""
