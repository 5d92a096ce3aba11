"""Forward + backward timings of the pieces of a training step, for ``bench_train.py --breakdown``.

Each builder returns ``{part name: run}`` where ``run()`` performs one forward + backward of that piece on a
fixed random batch and blocks until it is done. JAX pieces are jitted on their own; PyTorch pieces run
eagerly, as in its training step. Pieces (for the variant's shapes, batch ``B``):

* ``st_cnn_aff/loc_net``: localisation net + regression layer of the affine ST-CNN; grads of its parameters.
* ``st_cnn_aff/grid_sampler``: affine grid + bilinear sampling of the full-size input to the ST output size;
  grads of theta (what the step needs: the input itself takes no gradient).
* ``st_cnn_aff/classifier``: the CNN on the ST output; grads of its parameters.
* ``cnn/conv1``, ``cnn/conv2``: the CNN's 9x9 and 7x7 convolutions at the CNN's input resolution, grads of
  the kernel (conv1) and of the kernel and the input (conv2, whose input gradient feeds conv1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from configs import mnist as mnist_configs
from stn_jax import models, warp
from stn_jax.data import distortions

NUM_CLASSES = 10


def _conv_shapes(variant):
  """``[(name, side, c_in, c_out, kernel, input grad?)]`` of the CNN's two convolutions."""
  side = distortions.VARIANTS[variant]
  w1, w2 = mnist_configs.WIDTHS[variant]["cnn"]
  return [("cnn/conv1", side, 1, w1, 9, False), ("cnn/conv2", side // 2, w1, w2, 7, True)]


def jax_parts(variant: str, batch_size: int, seed: int) -> dict:
  """The JAX pieces (module docstring) for one distortion variant."""
  config = mnist_configs.get_config(f"{variant},st_cnn_aff")
  side = distortions.VARIANTS[variant]
  model = models.create_model(
    config.model, input_shape=(side, side, 1), num_classes=NUM_CLASSES, rngs=nnx.Rngs(seed)
  )
  st = model.st
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.uniform(size=(batch_size, side, side, 1)), jnp.float32)
  y = jnp.asarray(rng.integers(0, NUM_CLASSES, batch_size), jnp.int32)
  theta = jnp.asarray(st.family.identity_params()) + 0.1 * jnp.asarray(rng.normal(size=(batch_size, 6)))
  st_out = jnp.asarray(rng.uniform(size=(batch_size, *st.out_shape, 1)), jnp.float32)

  def loc_loss(transformer, images):
    return jnp.sum(jnp.square(transformer.transform_params(images)))

  def sampler_loss(t):
    out = warp.warp(x, t, st.family, st.out_shape, align_corners=st.align_corners)
    return jnp.sum(jnp.square(out))

  def ce_loss(net, images):
    return optax.softmax_cross_entropy_with_integer_labels(net(images), y).mean()

  grad_loc = nnx.jit(nnx.grad(loc_loss))
  grad_sampler = jax.jit(jax.grad(sampler_loss))
  grad_cls = nnx.jit(nnx.grad(ce_loss))
  parts = {
    "st_cnn_aff/loc_net": lambda: jax.block_until_ready(grad_loc(st, x)),
    "st_cnn_aff/grid_sampler": lambda: jax.block_until_ready(grad_sampler(theta)),
    "st_cnn_aff/classifier": lambda: jax.block_until_ready(grad_cls(model.classifier, st_out)),
  }
  for name, s, c_in, c_out, k, input_grad in _conv_shapes(variant):
    images = jnp.asarray(rng.uniform(size=(batch_size, s, s, c_in)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, c_in, c_out)) / k, jnp.float32)

    def conv_loss(w, im):
      out = jax.lax.conv_general_dilated(im, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return jnp.sum(jnp.square(jax.nn.relu(out)))

    grad = jax.jit(jax.grad(conv_loss, argnums=(0, 1) if input_grad else 0))
    parts[name] = lambda grad=grad, kernel=kernel, images=images: jax.block_until_ready(grad(kernel, images))
  return parts


def torch_parts(variant: str, batch_size: int, seed: int) -> dict:
  """The same pieces as :func:`jax_parts`, in PyTorch (the ports of ``torch_models.py``)."""
  import torch  # noqa: PLC0415 (optional dependency)
  import torch.nn.functional as F  # noqa: PLC0415
  import torch_models  # noqa: PLC0415

  torch.manual_seed(seed)
  side = distortions.VARIANTS[variant]
  model = torch_models.create_model(
    mnist_configs.model_config(variant, "st_cnn_aff"), input_shape=(side, side, 1), num_classes=NUM_CLASSES
  )
  x = torch.rand(batch_size, 1, side, side)
  y = torch.randint(0, NUM_CLASSES, (batch_size,))
  out_hw = model.st.out_hw
  st_out = torch.rand(batch_size, 1, *out_hw)
  theta = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]) + 0.1 * torch.randn(batch_size, 6)

  def loc():
    model.zero_grad(set_to_none=True)
    model.st.regression(model.st.loc(x)).square().sum().backward()

  def sampler():
    t = theta.clone().requires_grad_()
    grid = F.affine_grid(t.view(-1, 2, 3), (batch_size, 1, *out_hw), align_corners=False)
    F.grid_sample(x, grid, align_corners=False).square().sum().backward()

  def classifier():
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model.classifier(st_out), y).backward()

  parts = {"st_cnn_aff/loc_net": loc, "st_cnn_aff/grid_sampler": sampler, "st_cnn_aff/classifier": classifier}
  for name, s, c_in, c_out, k, input_grad in _conv_shapes(variant):
    images = torch.rand(batch_size, c_in, s, s)
    kernel = torch.randn(c_out, c_in, k, k) / k

    def conv(kernel=kernel, images=images, input_grad=input_grad):
      w = kernel.clone().requires_grad_()
      im = images.clone().requires_grad_(input_grad)
      F.relu(F.conv2d(im, w, padding="same")).square().sum().backward()

    parts[name] = conv
  return parts
