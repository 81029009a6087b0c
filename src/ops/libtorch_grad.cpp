// The vector-Jacobian product of a libtorch graph: the gradients of `outputs` with respect to
// `inputs` when the gradient arriving at each output is `grad_outputs` (PyTorch's
// `torch.autograd.grad(outputs, inputs, grad_outputs)`), for src/ops/libtorch.rs. tch 0.22 runs
// libtorch's autograd only from gradients of ones; without this, the gradient Burn hands an
// operation reached libtorch through a surrogate Σ out·grad, a dot product and a scaled copy
// over the whole activation per operation.
//
// Tensors cross as tch's handles (`torch::Tensor *`); the results are new handles that tch's
// `Tensor` takes ownership of. Returns null, or libtorch's error message (valid until the next
// call on this thread).
#include <torch/csrc/autograd/autograd.h>

#include <string>
#include <vector>

extern "C" const char *simclr_autograd_grad(at::Tensor **outputs, at::Tensor **grad_outputs, int noutputs,
                                            at::Tensor **inputs, int ninputs, at::Tensor **results) {
  static thread_local std::string error;
  try {
    std::vector<at::Tensor> outs, grads, ins;
    for (int i = 0; i < noutputs; ++i) {
      outs.push_back(*outputs[i]);
      grads.push_back(*grad_outputs[i]);
    }
    for (int i = 0; i < ninputs; ++i) ins.push_back(*inputs[i]);
    auto got = torch::autograd::grad(outs, ins, grads, /*retain_graph=*/false, /*create_graph=*/false);
    for (int i = 0; i < ninputs; ++i) results[i] = new at::Tensor(std::move(got[i]));
    return nullptr;
  } catch (const std::exception &e) {
    error = e.what();
    return error.c_str();
  }
}
