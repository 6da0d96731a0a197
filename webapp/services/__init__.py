"""Plain functions that do the work; views and CLI commands call them, and so do tests."""
