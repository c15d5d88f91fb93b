"""Dashboard: read models from events, KPIs, daily reports, the command screen."""
