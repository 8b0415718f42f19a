"""deflect: suggest help-center articles while a customer types, and measure the tickets avoided."""

__version__ = "0.1.0"
