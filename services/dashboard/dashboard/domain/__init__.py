"""Pure rules of the dashboard: no IO."""
