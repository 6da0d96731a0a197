"""`sslmanager ca ...`: CA profiles from the command line (filled in by the CA issue)."""
