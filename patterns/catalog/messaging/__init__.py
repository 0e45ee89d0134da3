"""Messaging: how messages are sent, received and parked so that none is lost or applied
twice."""
