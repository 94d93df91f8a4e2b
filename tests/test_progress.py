"""Progress lines: the first report's interval includes compiling, so it gives no ETA; later ones give an honest one."""
import logging

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
