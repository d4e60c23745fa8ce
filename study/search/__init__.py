"""A study on Ray Tune: the driver (run_study), the space and its sampler, one trial as Tune's trainable, the Tune
callbacks that record and show each trial, and the live view."""
