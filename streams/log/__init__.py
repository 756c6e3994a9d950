"""The delivery log: every attempt the workers made, for the API and the tools."""
