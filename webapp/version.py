"""The version, in a module of its own: nothing has to import the package's front file."""
__version__ = "0.1.0"
