"""Broadcasts and reminders: audiences, runs through the outbox, scheduling."""
