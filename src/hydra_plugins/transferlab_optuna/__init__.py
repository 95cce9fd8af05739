"""transferlab's Hydra plugins: an Optuna sweeper whose stored study a re-run continues."""
