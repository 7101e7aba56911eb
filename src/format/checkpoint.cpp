#include "qnoise/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <exception>
#include <filesystem>
#include <map>
#include <mutex>

#include "qnoise/atomic_file.h"
#include "qnoise/block_layout.h"  // shape_to_string
#include "qnoise/error.h"

namespace qnoise {

namespace {

at::Tensor bytes_to_tensor(const std::string& bytes) {
  at::Tensor tensor = at::empty({static_cast<int64_t>(bytes.size())}, at::kByte);
  std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(tensor.data_ptr<uint8_t>()));
  return tensor;
}

std::string tensor_to_bytes(const at::Tensor& tensor) {
  const at::Tensor bytes = tensor.to(at::kByte).contiguous();
  const auto* data = reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>());
  return std::string(data, data + bytes.numel());
}

std::map<std::string, std::vector<int64_t>> tensor_shapes(const torch::nn::Module& model) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : model.named_parameters()) shapes[item.key()] = item.value().sizes().vec();
  for (const auto& item : model.named_buffers()) shapes[item.key()] = item.value().sizes().vec();
  return shapes;
}

}  // namespace

void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointState& state) {
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  if (optimizer != nullptr) {
    torch::serialize::OutputArchive optimizer_archive;
    optimizer->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
  }
  archive.write("step", at::tensor(state.step));
  archive.write("epoch", at::tensor(state.epoch));
  archive.write("metadata", bytes_to_tensor(state.metadata));
  if (!state.extras.empty()) {
    torch::serialize::OutputArchive extras;
    for (const auto& [name, tensor] : state.extras) extras.write(name, tensor);
    archive.write("extras", extras);
  }
  {
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    archive.write("cpu_rng_state", generator.get_state());
  }
  // Streamed to the file as libtorch serializes. After a failed write the rest is dropped and the
  // failure rethrown once libtorch is done: an exception inside its zip writer could end in its
  // destructor, which writes the archive's end.
  write_file_atomically(path, [&](const AppendBytes& append) {
    std::exception_ptr failure;
    archive.save_to([&](const void* data, size_t size) -> size_t {
      if (!failure) {
        try {
          append(data, size);
        } catch (...) {
          failure = std::current_exception();
        }
      }
      return size;
    });
    if (failure) std::rethrow_exception(failure);
  });
}

std::string read_checkpoint_metadata(const std::string& path) {
  QNOISE_CHECK(std::filesystem::is_regular_file(path), "checkpoint '", path, "' does not exist");
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    at::Tensor metadata;
    archive.read("metadata", metadata);
    return tensor_to_bytes(metadata);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    throw Error("cannot read checkpoint '" + path + "': " + what.substr(0, what.find('\n')));
  }
}

CheckpointState load_checkpoint(const std::string& path, torch::nn::Module& model,
                                torch::optim::Optimizer* optimizer) {
  QNOISE_CHECK(std::filesystem::is_regular_file(path), "checkpoint '", path, "' does not exist");
  const auto expected_shapes = tensor_shapes(model);
  CheckpointState state;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    model.load(model_archive);
    if (optimizer != nullptr) {
      torch::serialize::InputArchive optimizer_archive;
      QNOISE_CHECK(archive.try_read("optimizer", optimizer_archive), "checkpoint '", path,
                   "' holds no optimizer state");
      optimizer->load(optimizer_archive);
    }
    at::Tensor step, epoch, metadata, rng_state;
    archive.read("step", step);
    archive.read("epoch", epoch);
    archive.read("metadata", metadata);
    archive.read("cpu_rng_state", rng_state);
    state.step = step.item<int64_t>();
    state.epoch = epoch.item<int64_t>();
    state.metadata = tensor_to_bytes(metadata);
    torch::serialize::InputArchive extras;
    if (archive.try_read("extras", extras))
      for (const auto& name : extras.keys()) {
        at::Tensor tensor;
        extras.read(name, tensor);
        state.extras[name] = tensor;
      }
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng_state);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const std::string what = e.what();
    throw Error("cannot read checkpoint '" + path + "': " + what.substr(0, what.find('\n')));
  }
  // libtorch's loader adopts whatever shape the file holds: compare with what the model had.
  for (const auto& [name, shape] : tensor_shapes(model)) {
    const auto expected = expected_shapes.at(name);
    QNOISE_CHECK(shape == expected, "checkpoint '", path, "': '", name, "' has shape ",
                 shape_to_string(shape), " but the model expects ", shape_to_string(expected));
  }
  return state;
}

}  // namespace qnoise
