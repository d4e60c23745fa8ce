"""Scoring a model: the bias metrics, GLUE-format fine-tuning and scoring, the benchmark files, occupation shares."""
