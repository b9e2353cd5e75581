"""Fusion: the grade scale, the grading policy, decision rules and the fusion model."""
