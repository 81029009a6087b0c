// The optimisers' update of every parameter at once, for src/ops/optimizer.rs: PyTorch's fused
// SGD kernel and its multi-tensor (`_foreach_*`) operations, which tch 0.22 does not expose. Burn
// updates parameter by parameter, several small operations each (on a GPU a kernel launch per
// operation and parameter); these take lists and run a handful of kernels for the whole network.
//
// Every function takes tch's handles (`torch::Tensor *`) of the parameters and their gradients,
// each pair dense and row-major (the kernels pair values by position), and of the flat state
// buffers, each with as many values as its parameter; it updates the parameters and the buffers
// in place, and LARS the gradients too (into the scaled step). Returns null, or libtorch's error
// message (valid until the next call on this thread).
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <string>
#include <vector>

namespace {

thread_local std::string error;

std::vector<at::Tensor> list(at::Tensor **tensors, int n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}

// Each flat state buffer viewed in its parameter's shape (the same storage: updates land in it).
std::vector<at::Tensor> shaped(at::Tensor **buffers, const std::vector<at::Tensor> &params) {
  std::vector<at::Tensor> out;
  out.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) out.push_back(buffers[i]->view(params[i].sizes()));
  return out;
}

template <typename F> const char *guarded(F update) {
  try {
    at::NoGradGuard no_grad;
    update();
    return nullptr;
  } catch (const std::exception &e) {
    error = e.what();
    return error.c_str();
  }
}

}  // namespace

// SGD with Nesterov momentum, dampening 0 (src/optim.rs's `Rule::Sgd`):
// `b ← m·b + g + λw; w ← w − η(g + λw + m·b)`, as PyTorch's `SGD(nesterov=True, fused=True)`.
// With zeroed buffers the first step is PyTorch's first step (`b ← g + λw`), so it is not flagged.
extern "C" const char *simclr_fused_sgd(at::Tensor **params, at::Tensor **grads, at::Tensor **buffers, int n, double lr,
                                        double momentum, double weight_decay) {
  return guarded([&] {
    auto w = list(params, n);
    auto b = shaped(buffers, w);
    at::_fused_sgd_(w, list(grads, n), b, weight_decay, momentum, lr, /*dampening=*/0.0, /*nesterov=*/true,
                    /*maximize=*/false, /*is_first_step=*/false);
  });
}

// LARS (src/lars.rs): with `adapt`, `g ← g + λw` (in place: no fresh memory to fault in), the
// trust ratio `r = ε‖w‖/‖g‖` (1 where either norm is 0) per parameter, `v ← m·v + η·r·g`; without,
// `v ← m·v + η·g`; then `w ← w − v`. The norms of all parameters come from one multi-tensor
// reduction and the ratios stay on the device.
extern "C" const char *simclr_foreach_lars(at::Tensor **params, at::Tensor **grads, at::Tensor **buffers, int n, double lr,
                                           double momentum, double weight_decay, double trust_coefficient, int adapt) {
  return guarded([&] {
    auto w = list(params, n);
    auto v = shaped(buffers, w);
    at::_foreach_mul_(v, momentum);
    if (adapt) {
      auto g = list(grads, n);
      at::_foreach_add_(g, w, weight_decay);
      auto w_norm = at::stack(at::_foreach_norm(w));
      auto g_norm = at::stack(at::_foreach_norm(g));
      auto usable = w_norm.gt(0).logical_and(g_norm.gt(0));
      auto scale = at::where(usable, w_norm * trust_coefficient / g_norm, at::ones_like(w_norm)) * lr;
      at::_foreach_mul_(g, scale.unbind());
      at::_foreach_add_(v, g);
    } else {
      at::_foreach_add_(v, list(grads, n), lr);
    }
    at::_foreach_sub_(w, v);
  });
}
