"""lm-eval task configs for the four preference shifts (located by `innerdpo tasks-path`)."""
