"""One config on Ray: Ray started or joined (start), a distillation and its evaluation as a Ray Train run
(train_run), and what each of its workers runs (worker)."""
