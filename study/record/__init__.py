"""What a study keeps: its folder, its MLflow runs, and the outbox that holds runs while tracking is down."""
