"""A trial again on new seeds: the seed runs as Ray tasks (seeds), the confirm stage that races the best trials and
the control at the end of a study (confirm), and `kdstudy rerun` (rerun)."""
