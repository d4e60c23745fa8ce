"""One distillation without a search: its teacher and corpus, measuring teacher and student, `kdstudy distill`."""
