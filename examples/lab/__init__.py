"""The lab: a Strawberry GraphQL chat served on uvcore (run: python -m examples.lab.server)."""
