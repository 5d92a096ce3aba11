"""Tests of the training loop on real MNIST: loss falls, resume == uninterrupted, determinism, NaN stop."""

import json
import os
import shutil
import signal

import helpers
import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from configs import mnist as mnist_configs
from stn_jax import checkpoint, figures, guards, metrics, provenance, rundir, train, train_config, train_steps


@pytest.fixture(autouse=True, scope="module")
def _compilation_cache(tmp_path_factory):
  """Shares compiled train steps between the runs of this module (each run jits a fresh step function), and
  leaves no cache behind for the modules that run after it in the same process."""
  names = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
  )
  old = {name: getattr(jax.config, name) for name in names}
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  yield
  for name, value in old.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()  # JAX sets its cache up once per process: forget it, not just its settings


def _config(model="tiny_st_fcn_aff", *, steps=6, **overrides):
  config = mnist_configs.get_config(f"e,{model}")
  config.batch_size = 32
  config.total_steps = steps
  config.schedule = "fast"
  config.learning_rate = 3e-3
  config.warmup_steps = 0
  config.log_every = 3
  config.checkpoint_every = 3
  config.eval_every = 0
  config.data.test_size = 96
  config.eval_batch_size = 64
  config.num_figure_examples = 0
  config.update(overrides)
  return config


def _final_params(workdir):
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  state, _ = ckpt.restore(None)
  ckpt.close()
  return state["params"]


def _assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def _killed(*args, **kwargs):
  raise KeyboardInterrupt  # stands for a SIGKILL at this point: nothing after it runs


def test_resume_matches_uninterrupted_and_runs_are_deterministic(tmp_path):
  config = _config()
  a = train.train_and_evaluate(config, str(tmp_path / "a"))
  b_dir = str(tmp_path / "b")
  b = train.train_and_evaluate(config, b_dir)
  # Same seed, same machine: the same numbers, bit for bit.
  assert a["test_loss"] == b["test_loss"] and a["test_error"] == b["test_error"]
  assert a["command"] == provenance.command() != ""  # the process's own command line
  params_a = _final_params(str(tmp_path / "a"))
  _assert_trees_equal(params_a, _final_params(b_dir))

  # "Kill" run b after step 3: drop its final checkpoint and results, then rerun the same command.
  shutil.rmtree(os.path.join(b_dir, "checkpoints", "6"))
  os.remove(os.path.join(b_dir, "results.json"))
  resumed = train.train_and_evaluate(config, b_dir)
  assert resumed["resumed_from_step"] == 3 and resumed["steps"] == 6
  # The killed run's records after step 3 were dropped, not written twice.
  assert (
    helpers.records(b_dir)
    == helpers.records(str(tmp_path / "a"))
    == [(3, "train"), (6, "train"), (6, "eval")]
  )
  _assert_trees_equal(params_a, _final_params(b_dir))
  assert resumed["test_loss"] == a["test_loss"]

  # What every run leaves behind.
  with open(os.path.join(b_dir, "results.json")) as f:
    results = json.load(f)
  for key in (
    "test_error",
    "steps",
    "wall_seconds",
    "seed",
    "config",
    "git_commit",
    "hardware",
    "schedule",
    "param_count",
  ):
    assert key in results
  assert results["config"]["model"]["name"] == "tiny_st_fcn_aff" and results["schedule"] == "fast"
  assert results["hardware"]["device_count"] == jax.device_count()
  series = metrics.read_jsonl(os.path.join(b_dir, "metrics.jsonl"))
  assert [s for s, _ in series["train/loss"]] == [3, 6] and "eval/test_error" in series
  # The run's own time, summed over the resume: rising, and no more than the results' total.
  walls = [w for _, w in series["wall_seconds"]]
  assert 0 < walls[0] < walls[1] <= results["wall_seconds"]
  assert [s for s, _ in series["eval/wall_seconds"]] == [6] and walls[1] <= series["eval/wall_seconds"][0][1]
  assert any(
    name.startswith("events.out.tfevents") for name in os.listdir(os.path.join(b_dir, "tensorboard"))
  )
  assert os.path.exists(os.path.join(b_dir, "training_curves.png"))


def test_real_mnist_loss_falls(tmp_path):
  config = _config(steps=45, batch_size=64, learning_rate=1e-2, log_every=15, checkpoint_every=0)
  results = train.train_and_evaluate(config, str(tmp_path))
  losses = [v for _, v in metrics.read_jsonl(os.path.join(tmp_path, "metrics.jsonl"))["train/loss"]]
  assert len(losses) == 3
  assert losses[-1] < losses[0] - 0.3, losses
  assert results["test_error"] < 80.0  # chance is 90%


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
  # SGD with lr 1e30: step 1's loss is finite, its update makes every later forward pass overflow.
  config = _config(
    "tiny_fcn", steps=5, schedule="paper", momentum=0.0, learning_rate=1e30, log_every=1, checkpoint_every=1
  )
  with pytest.raises(FloatingPointError, match="at step 2"):
    train.train_and_evaluate(config, str(tmp_path))
  ckpt = checkpoint.Checkpointer(os.path.join(tmp_path, "checkpoints"))
  assert ckpt.all_steps() == [1]
  ckpt.close()
  assert not os.path.exists(os.path.join(tmp_path, "results.json"))


def test_schedules_and_step_counts():
  config = _config(steps=300, schedule="paper", learning_rate=None)
  lr = train_config.learning_rate_schedule(config, 300)
  np.testing.assert_allclose(
    [lr(0), lr(99), lr(100), lr(199), lr(200), lr(299)], [1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4], rtol=1e-6
  )
  config.schedule, config.warmup_steps = "fast", 10
  lr = train_config.learning_rate_schedule(config, 300)
  np.testing.assert_allclose([lr(0), lr(10), lr(300)], [0.0, 1e-3, 0.0], atol=1e-9)
  config.warmup_steps = 200  # capped at 10% of a 50-step run
  np.testing.assert_allclose(train_config.learning_rate_schedule(config, 50)(5), 1e-3, rtol=1e-6)
  assert train_config.num_steps(config) == 300
  config.num_epochs = 2.0  # 2 * 60000 / 32 steps
  assert train_config.num_steps(config) == 3750
  config.schedule = "adagrad"
  with pytest.raises(ValueError, match="unknown schedule"):
    train_config.learning_rate_schedule(config, 300)


def test_offcentre_class_trains_an_eleven_class_model(tmp_path):
  config = _config("tiny_fcn", steps=2, log_every=1, checkpoint_every=0)
  config.data.offcentre_fraction = 0.3
  results = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(results["test_error"])
  out_dims = {leaf.shape[-1] for leaf in jax.tree.leaves(_final_params(str(tmp_path))) if leaf.ndim == 1}
  assert 11 in out_dims and 10 not in out_dims  # the last bias has 11 classes


def test_a_finished_run_is_not_touched_again_and_a_changed_config_is_refused(tmp_path):
  config = _config("tiny_fcn", steps=3)
  workdir = str(tmp_path / "run")
  first = train.train_and_evaluate(config, workdir)
  results_path = os.path.join(workdir, "results.json")
  with open(results_path) as f:
    written = f.read()
  # The same command again: the stored results come back and nothing is rewritten.
  again = train.train_and_evaluate(_config("tiny_fcn", steps=3), workdir)
  assert again == json.loads(written) and again["test_error"] == first["test_error"]
  with open(results_path) as f:
    assert f.read() == written
  # Bookkeeping fields may change; anything that changes the numbers may not.
  train.train_and_evaluate(_config("tiny_fcn", steps=3, log_every=1, eval_every=2), workdir)
  for field, value in (("seed", 1), ("total_steps", 9), ("total_steps", 2), ("learning_rate", 1e-2)):
    with pytest.raises(rundir.ConfigMismatchError, match=f"{field}: .* in the run"):
      train.train_and_evaluate(_config("tiny_fcn", steps=3, **{field: value}), workdir)
  changed = _config("tiny_fcn", steps=3)
  changed.data.test_seed = 1
  with pytest.raises(rundir.ConfigMismatchError, match=r"data\.test_seed: 0 in the run, 1 now"):
    train.train_and_evaluate(changed, workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    stored = json.load(f)
  assert stored["seed"] == 0 and stored["data"]["variant"] == "e" and stored["total_steps"] == 3
  with open(results_path) as f:
    assert f.read() == written


@pytest.mark.parametrize(
  "field, value",
  [
    ("total_steps", -5),
    ("total_steps", 0),
    ("batch_size", 0),
    ("learning_rate", -0.01),
    ("warmup_steps", -10),
    ("log_every", -1),
    ("eval_every", -2),
    ("checkpoint_every", -3),
    ("checkpoints_to_keep", 0),
    ("eval_batch_size", 0),
    ("num_epochs", -1.0),
    ("schedule", "adam"),
    ("seed", 2**70),  # used to be an OverflowError from JAX's PRNG
    ("seed", 2**32),  # JAX keeps 32 bits: this would silently be seed 0 again
    ("seed", -1),  # ... and this seed 2**32 - 1
  ],
)
def test_bad_training_fields_are_refused_before_anything_is_written(tmp_path, field, value):
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match=f"config.{field} must be"):
    train.train_and_evaluate(_config("tiny_fcn", **{field: value}), str(workdir))
  assert not workdir.exists()


@pytest.mark.parametrize("value", [2**32, -1, 2**63])
def test_a_test_seed_jax_cannot_tell_apart_is_refused_before_training(tmp_path, value):
  config = _config("tiny_fcn")
  config.data.test_seed = value  # was only read by the first evaluation, after the training steps
  with pytest.raises(ValueError, match="test_seed must be"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_the_seed_range_accepted_is_the_range_jax_tells_apart():
  for value in (0, 2**32 - 1):
    config = _config("tiny_fcn", seed=value)
    config.data.test_seed = value
    train_config.validate_config(config)
  key_bits = lambda seed: jax.random.key_data(jax.random.key(seed)).tolist()  # noqa: E731
  assert key_bits(2**32 - 1) != key_bits(0) and key_bits(2**32) == key_bits(0)  # why 2**32 is refused


def test_an_overridden_distortion_is_refused(tmp_path):
  # configs/mnist.py derives the model's widths and ST downsampling from the distortion of its argument.
  config = _config()
  config.data.variant = "rts"
  with pytest.raises(ValueError, match=r"config.data.variant is 'rts', but .* derived for 'e'"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_a_failing_command_leaves_the_stored_config_alone(tmp_path):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(_config("tiny_fcn", steps=3), workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    stored = f.read()
  bad = _config("tiny_fcn", steps=3)
  bad.model.name = "resnet"
  with pytest.raises(ValueError, match="resnet"):
    train.train_and_evaluate(bad, workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    assert f.read() == stored


def test_non_finite_parameters_after_the_last_update_stop_the_run(tmp_path):
  # The loss of step 1 is finite (computed before the update); the update itself overflows.
  config = _config(
    "tiny_fcn", steps=1, schedule="paper", momentum=0.0, learning_rate=1e39, checkpoint_every=1
  )
  with pytest.raises(FloatingPointError, match="not finite after step 1.*No checkpoint was written"):
    train.train_and_evaluate(config, str(tmp_path))
  assert checkpoint.Checkpointer(os.path.join(tmp_path, "checkpoints")).latest_step() is None
  assert not os.path.exists(os.path.join(tmp_path, "results.json"))


def test_a_run_stopped_by_a_signal_or_killed_mid_eval_ends_as_an_uninterrupted_run(tmp_path, monkeypatch):
  config = _config("tiny_fcn", steps=8, log_every=4, eval_every=4, checkpoint_every=4)
  uninterrupted = str(tmp_path / "a")
  expected = train.train_and_evaluate(config, uninterrupted)
  workdir = str(tmp_path / "b")
  # Killed while evaluating at step 4: that step's checkpoint must not have been started, or the rerun would
  # resume after the evaluation and never write it.
  saves = []
  with monkeypatch.context() as patch:
    patch.setattr(train_steps, "evaluate", _killed)
    patch.setattr(checkpoint.Checkpointer, "save", lambda self, step, *args, **kwargs: saves.append(step))
    with pytest.raises(KeyboardInterrupt):
      train.train_and_evaluate(config, workdir)
  assert saves == []
  # Ctrl-C during step 5: the run stops after it with a checkpoint of step 5 that holds its training metrics.
  create_setup = train_steps.create_setup

  def interrupted_at_step_5(*args, **kwargs):
    setup = create_setup(*args, **kwargs)

    def step_fn(state, data):
      if int(state["step"]) == 4:
        os.kill(os.getpid(), signal.SIGINT)
      return setup.step_fn(state, data)

    return setup._replace(step_fn=step_fn)

  with monkeypatch.context() as patch, helpers.default_stop_signals():
    patch.setattr(train_steps, "create_setup", interrupted_at_step_5)
    with pytest.raises(guards.Interrupted, match="SIGINT received: stopped after step 5 of 8 .* Rerun"):
      train.train_and_evaluate(config, workdir)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
  assert checkpoint.Checkpointer(os.path.join(workdir, "checkpoints")).all_steps() == [4, 5]

  resumed = train.train_and_evaluate(config, workdir)
  assert resumed["resumed_from_step"] == 5 and resumed["test_loss"] == expected["test_loss"]
  _assert_trees_equal(_final_params(uninterrupted), _final_params(workdir))
  # The same records, once each, with the same values: the training means logged at step 8 include step 5.
  assert helpers.records(workdir) == helpers.records(uninterrupted)
  ours, theirs = (metrics.read_jsonl(os.path.join(d, "metrics.jsonl")) for d in (workdir, uninterrupted))
  timing = ("wall_seconds", "eval/wall_seconds", "train/steps_per_second")
  assert {k: v for k, v in ours.items() if k not in timing} == {
    k: v for k, v in theirs.items() if k not in timing
  }


def test_a_run_killed_before_its_results_are_written_is_finished_by_a_rerun(tmp_path, monkeypatch):
  config = _config("tiny_fcn", steps=3)
  results_path = os.path.join(tmp_path, "results.json")
  with monkeypatch.context() as patch:
    patch.setattr(figures, "write_run_figures", _killed)
    with pytest.raises(KeyboardInterrupt):
      train.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(results_path)  # results.json comes last: the run does not count as finished
  first = train.train_and_evaluate(config, str(tmp_path))  # evaluates the final checkpoint again
  assert first["resumed_from_step"] == 3 and os.path.exists(os.path.join(tmp_path, "training_curves.png"))
  assert helpers.records(str(tmp_path)) == [(3, "train"), (3, "eval")]
  # A results.json cut short (as a kill could leave it before writes were atomic) is rewritten.
  with open(results_path) as f:
    text = f.read()
  with open(results_path, "w") as f:
    f.write(text[: len(text) // 2])
  again = train.train_and_evaluate(config, str(tmp_path))
  assert again["test_loss"] == first["test_loss"]
  with open(results_path) as f:
    assert json.load(f)["test_loss"] == first["test_loss"]
  # Both reruns redid the final evaluation: TensorBoard still shows one point per step, as metrics.jsonl.
  assert helpers.tensorboard_steps(str(tmp_path)) == helpers.jsonl_steps(str(tmp_path))


def test_a_disk_too_full_for_the_checkpoints_stops_the_run_before_training(tmp_path, monkeypatch):
  monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**6, 10**6 - 1000, 1000))
  with pytest.raises(OSError, match="MiB free, but 2 checkpoint"):
    train.train_and_evaluate(_config("tiny_fcn"), str(tmp_path))
  assert not os.path.exists(os.path.join(tmp_path, "metrics.jsonl"))
