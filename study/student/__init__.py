"""The student out of a study: `kdstudy export` (export), its model card (card), and the study's MLflow Model
Registry (registry)."""
