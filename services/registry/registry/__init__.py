"""Person registry: people, travel history, risk areas, checkpoints, contacts, vaccinations, filings."""
