"""Preference data: loading, the mini suite, rendering and tokenisation."""
