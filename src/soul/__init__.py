"""Soul: one portrait, a prompt and a speech track in; a long, lip-synced, identity-stable video out."""

__version__ = "0.1.0"
