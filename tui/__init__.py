"""The Textual dashboard (`innerdpo tui`); the core library never imports it."""
