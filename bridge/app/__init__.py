"""The ``bridge`` command and the process it runs: settings, serving, logs, metrics."""
