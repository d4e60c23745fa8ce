"""`kdstudy run --dry-run`: what a study will do (dry_run) and what it will cost (cost), from its YAML alone."""
