#include "cli/torchscript_model.h"

#include <ATen/ATen.h>
#include <dlfcn.h>
#include <torch/script.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

#include "qnoise/error.h"

namespace qnoise::cli {

namespace {

std::filesystem::path program_directory() {
  std::vector<char> buffer(4096);
  const ssize_t length = readlink("/proc/self/exe", buffer.data(), buffer.size() - 1);
  if (length <= 0) return std::filesystem::current_path();
  return std::filesystem::path(std::string(buffer.data(), static_cast<size_t>(length))).parent_path();
}

void load_operator_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::vector<std::filesystem::path> candidates;
    if (const char* named = std::getenv("QNOISE_OPS_LIBRARY")) {
      candidates.emplace_back(named);
    } else {
      const std::filesystem::path here = program_directory();
      candidates = {here / "src" / "libqnoise_ops.so", here.parent_path() / "lib" / "libqnoise_ops.so"};
    }
    std::string tried;
    for (const auto& path : candidates) {
      if (!std::filesystem::exists(path)) {
        tried += (tried.empty() ? "" : ", ") + path.string();
        continue;
      }
      QNOISE_CHECK(dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr, "cannot load qnoise's operator library '",
                   path.string(), "': ", dlerror());
      return;
    }
    throw Error("TorchScript models need qnoise's operator library libqnoise_ops.so, not found at " + tried +
                " (build it: cmake --build build --target qnoise_ops; or set QNOISE_OPS_LIBRARY)");
  });
}

}  // namespace

torch::jit::Module load_torchscript_model(const std::string& path) {
  QNOISE_CHECK(std::filesystem::is_regular_file(path), "TorchScript model '", path, "' does not exist");
  load_operator_library();
  try {
    torch::jit::Module module = torch::jit::load(path);
    module.eval();
    return module;
  } catch (const c10::Error& e) {
    throw Error("'" + path + "' is not a TorchScript model qnoise can load: " + e.what_without_backtrace());
  }
}

at::Tensor classify_images(torch::jit::Module& module, const at::Tensor& images, int64_t batch) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> probabilities;
  for (int64_t start = 0; start < images.size(0); start += batch) {
    const at::Tensor x = images.slice(0, start, std::min(start + batch, images.size(0)));
    const c10::IValue output = module.forward({x});
    QNOISE_CHECK(output.isTensor(), "the TorchScript model returns ", output.tagKind(), ", not a tensor of logits");
    const at::Tensor logits = output.toTensor();
    QNOISE_CHECK(logits.dim() == 2 && logits.size(0) == x.size(0), "the TorchScript model returns ", logits.sizes(),
                 " for ", x.size(0), " images; expected [", x.size(0), ", classes]");
    probabilities.push_back(logits.to(at::kFloat).softmax(1));
  }
  return at::cat(probabilities);
}

}  // namespace qnoise::cli
