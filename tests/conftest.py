"""Test-wide setup: float64 on, once, before any test module is imported.

The suite compares hand-derived derivatives with `jax.grad` to ~1e-10 and
Monte Carlo means with exact values to a few standard errors; both need
float64. A test that needs float32 behaviour asks for float32 arrays (or
switches x64 off inside the test and restores it).
"""

import jax

jax.config.update("jax_enable_x64", True)
