"""What every Fangkong service shares. Nothing service-specific lives here."""
