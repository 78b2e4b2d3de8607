"""sentiwatch: a streaming public-opinion monitor.

The core package holds only what every part shares (the command line, configuration, label sets,
file reading); the heavy parts live in `trainer`, `exporter` and `streamer`.
"""

__version__ = "0.1.0"
