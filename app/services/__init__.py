"""Framework-free services: routers parse and validate, then call one of these under a named budget."""
