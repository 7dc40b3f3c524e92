"""App: settings, wiring (bootstrap), the use cases the triggers call, logging."""
