"""What a recipe that makes its masks per model (recipes.OwnMask) reads of one model trained like the run's: its seed,
w0, members and finished models; of the run's own model (`RunModel`) or of a zoo model (lottery/zoo_models.py)."""
import jax


class OwnModel:
  """One model trained like the run's; everything it gives is numpy."""
  seed: int  # its init and data order; a mask's random draws use it too

  def w0(self) -> dict:
    """Its {params, batch_stats} at step 0."""
    raise NotImplementedError

  def members(self) -> tuple:
    """(images, labels [m]) of the examples it trains on: the images uint8, indexed by position in [0, m)."""
    raise NotImplementedError

  def final_params(self, name: str) -> dict:
    """The final parameters of its finished model `name` (dense, an IMP round, ...)."""
    raise NotImplementedError

  def mask(self, name: str) -> dict:
    """The mask of its finished model `name`."""
    raise NotImplementedError


class RunModel(OwnModel):
  """The run's own model: w0, members and finished models of the run folder."""

  def __init__(self, ctx):
    self.ctx, self.seed = ctx, ctx.config.seed

  def w0(self) -> dict:
    return jax.device_get(self.ctx.restore_variables(self.ctx.layout.w0))

  def members(self) -> tuple:
    return self.ctx.data.host_images, self.ctx.data.host_labels

  def final_params(self, name: str) -> dict:
    return jax.device_get(self.ctx.restore_variables(self.ctx.layout.final(name))["params"])

  def mask(self, name: str) -> dict:
    return self.ctx.load_mask(name)
