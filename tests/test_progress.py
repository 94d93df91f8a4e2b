"""Progress lines: the first report's interval includes compiling, so it gives no ETA; later ones give an honest one.
The pipeline's time for the models left is paced by the models a launch trained, not those it found finished."""
import logging
import types

from mialth_jax.lottery import pipeline
from mialth_jax.utils import progress


def test_the_first_report_gives_no_eta_and_the_next_one_divides_the_steps_left_by_the_last_rate(monkeypatch, caplog):
  clock = iter([0.0, 100.0, 110.0])  # 100 s for the first 10 steps (compiling), 10 s for the next 10
  monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
  meter = progress.Meter("m", total_steps=120, start_step=0, batch_size=4)
  with caplog.at_level(logging.INFO, logger="absl"):
    meter.update(10, 1.0, 0.5)
    meter.update(20, 0.9, 0.6)
  first, second = [r.getMessage() for r in caplog.records]
  assert first.endswith("ETA after the next report (compiling included)")
  assert second.endswith("4 img/s  ETA 0:01:40")  # 1 step/s: 100 steps left


def test_the_remaining_time_is_paced_by_the_models_this_launch_trained_only(caplog):
  """Models found finished take no time: they must not make the estimate for the others look like zero."""
  ctx, plan = types.SimpleNamespace(log_prefix=""), ["dense", "ticket_s50", "ticket_s80", "ticket_s90"]
  with caplog.at_level(logging.INFO, logger="absl"):
    pipeline._log_remaining(ctx, plan, done=2, trained=0, elapsed=0.4)
    pipeline._log_remaining(ctx, plan, done=3, trained=1, elapsed=90.0)
    pipeline._log_remaining(ctx, plan, done=4, trained=2, elapsed=180.0)
  assert [r.getMessage() for r in caplog.records] == [
      "2 of 4 models done; the other 2 need a time not known yet (this launch has trained no model to time) "
      "(then the attacks)",
      "3 of 4 models done; the other 1 need about 0:01:30 at this launch's pace (then the attacks)"]
