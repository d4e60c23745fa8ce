"""A study on Ray: the driver, the search space, one trial, the seed runs of rerun and confirm, the front published."""
