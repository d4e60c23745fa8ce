"""What a study keeps: its folder and the layout of its storage (folder), its MLflow runs (tracking), the outbox that
holds runs while tracking is down, the record's copy in the storage (mirror), the Optuna storage that follows the
folder (optuna_store), and what a Train run left in the storage, read back (checkpoint)."""
