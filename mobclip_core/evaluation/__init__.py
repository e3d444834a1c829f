"""Evaluation: probes on planted labels and downstream regression."""
