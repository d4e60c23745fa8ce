"""One config on Ray: Ray started or joined (start), a distillation and its evaluation as a Ray Train run
(train_run), what each of its workers runs (worker), and the layout of that run's final checkpoint (checkpoint)."""
