"""Entry point: trains and evaluates one config.

  python -m stn_jax.main --config=configs/mnist.py:rts,st_cnn_aff --workdir=/tmp/stn_rts \
      --config.total_steps=1500 --config.schedule=fast

``--config`` is a config file with an optional argument after ``:``; any field can be overridden with
``--config.<field>=<value>`` and unknown fields are an error. Rerunning the same command resumes from the
newest checkpoint in ``--workdir``; rerunning a finished run prints its stored result and changes nothing;
a command whose config differs from the one the workdir was made with (other than logging, evaluation and
checkpoint periods and figures) is refused (:mod:`stn_jax.rundir`). In a single-process supervised run,
Ctrl-C or SIGTERM stops training after its current step with a checkpoint
(:class:`stn_jax.guards.Interrupted`); multi-process runs and co-localisation stop at once (keeping their last
checkpoint / finished classes). The same command resumes either.
Everything else lives in :mod:`stn_jax.train` (with :mod:`stn_jax.train_config` and
:mod:`stn_jax.train_steps`), or in :mod:`stn_jax.coloc_train` for a config with
``trainer = 'coloc'`` (``configs/coloc.py``, appendix A.2).
"""

from __future__ import annotations

import re
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from stn_jax import checkpoint, coloc_train, guards, parallel, rundir, train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, results.json and figures.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  # Refused configs, unreadable checkpoints and stops on a signal: the message says all, a traceback would
  # bury it.
  try:
    run(argv)
  except rundir.ConfigError as e:
    sys.exit(f"FATAL config error: {e}")
  except checkpoint.CheckpointError as e:
    sys.exit(f"FATAL checkpoint error: {e}")
  except guards.Interrupted as e:
    print(f"Interrupted: {e}", file=sys.stderr)
    sys.exit(128 + e.signum)  # the shell's code for a process ended by that signal
  except KeyboardInterrupt:
    print(
      f"Interrupted. Rerun the same command to resume from what {FLAGS.workdir} holds (the last checkpoint, "
      "or the co-localisation classes finished so far).",
      file=sys.stderr,
    )
    sys.exit(128 + 2)


def run(argv):
  del argv  # checked by main
  parallel.initialize()
  # Orbax logs every save at INFO; keep the console for our progress lines (and orbax's warnings).
  logging.get_absl_handler().addFilter(
    lambda record: "/orbax/" not in record.pathname or record.levelno >= logging.converter.STANDARD_WARNING
  )
  logging.info(
    "JAX process %d / %d, %d local devices, %d devices in all: %s",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
    jax.devices(),
  )
  logging.info("Config:\n%s", FLAGS.config)
  if FLAGS.config.get("trainer") == "coloc":
    results = coloc_train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    for variant, rate in results["mean_success_percent"].items():
      print(f"co-localisation {variant.upper()}: IoU > 0.5 on {rate:.1f}% of images (mean over classes).")
    return
  results = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  on = f" on {results['variant']}" if results.get("variant") else ""
  print(
    f"{results['model']}{on}: test error {results['test_error']:.2f}% after "
    f"{results['steps']} steps ({results['wall_seconds']:.0f} s). Results and figures in {FLAGS.workdir}"
  )


def parse_flags(argv):
  """absl's flag parsing, with an unknown ``--config.<field>`` reported in one line instead of a traceback."""
  try:
    return app.parse_flags_with_usage(argv)
  except AttributeError as e:  # ml_collections: the override names a field the config does not have
    overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
    raw = str(e.args[0] if e.args else e)
    name = re.search(r"([A-Za-z_][A-Za-z0-9_]*)", raw)
    hint = re.search(r"Did you mean [^?]*\?", raw)
    detail = repr(name.group(1) if name else raw) + (f" ({hint.group(0)})" if hint else "")
    sys.exit(
      f"FATAL Flags parsing error: unknown config field {detail} (overrides given: {', '.join(overrides)})."
    )


if __name__ == "__main__":
  # Log INFO to stderr by default so the progress line is visible.
  flags.FLAGS.set_default("logtostderr", True)
  app.run(main, flags_parser=parse_flags)
