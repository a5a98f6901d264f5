"""Test support, imported only by tests and test tools, never by the product: execution targets that drive real
third-party code (verl's trainer) on CPU (`verl_cpu/`)."""
