"""mialth_jax: membership-inference leakage of dense networks and their lottery tickets, in JAX.

The Python API (`mialth_jax.api`; README "Python API"): `load_run(workdir)` gives a finished run's models as
functions of images, its member split and attack results; `attack_logits(...)` attacks logits one already has.
They are imported on first use, so `import mialth_jax` stays cheap (JAX loads only when the API is touched).
"""
__all__ = ["Model", "Run", "attack_logits", "load_run"]


def __getattr__(name: str):
  if name in __all__:
    from mialth_jax import api
    return getattr(api, name)
  raise AttributeError(f"module 'mialth_jax' has no attribute {name!r}")
