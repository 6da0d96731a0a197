"""`sslmanager agent`: the small command each web server runs to fetch its certificates from
SSL Manager's API and install them. It imports the standard library only (no Flask,
SQLAlchemy, cryptography or ACME code), so it starts fast and stays light; webapp.console
hands `agent` to webapp.agent.run before anything else is loaded."""
