#include "ops/compressed_tensor.h"
#include "ops/op_registry.h"

#include <nlohmann/json.hpp>
#include <torch/library.h>

#include "qnoise/error.h"
#include "qnoise/qnz_file.h"
#include "qnoise/safetensors.h"

namespace qnoise::ops {

CompressedTensorState state_of(const CompressedWeight& weight) {
  c10::Dict<std::string, at::Tensor> parts;
  for (const auto& [suffix, tensor] : stored_parts(weight)) parts.insert(suffix, tensor);
  return {describe_weight(weight).dump(), parts};
}

CompressedWeight weight_of(const CompressedTensorState& state) {
  const auto& [text, parts] = state;
  nlohmann::json description;
  try {
    description = parse_json_text(text, "a compressed tensor's description");
    return weight_from_description(description, [&](const std::string& suffix, const std::string& dtype) {
      const auto found = parts.find(suffix);
      QNOISE_CHECK(found != parts.end(), "compressed tensor ", text, " lacks its part '", suffix, "'");
      const at::Tensor tensor = found->value();
      const bool either = dtype == "U8|U16";
      const bool fits = either ? tensor.scalar_type() == at::kByte || tensor.scalar_type() == at::kShort
                               : tensor.scalar_type() == torch_dtype_of(dtype);
      QNOISE_CHECK(fits, "compressed tensor ", text, ": part '", suffix, "' is ", tensor.scalar_type(),
                   ", expected ", either ? "uint8 or int16" : c10::toString(torch_dtype_of(dtype)));
      return tensor.contiguous();
    });
  } catch (const nlohmann::json::exception&) {
    throw Error("not a compressed tensor description: " + text);
  }
}

namespace {

using CompressedTensorRef = c10::intrusive_ptr<CompressedTensor>;

}  // namespace

void register_compressed_tensor(torch::Library& library) {
  library.class_<CompressedTensor>("CompressedTensor")
      .def(torch::init([](std::string description, c10::Dict<std::string, at::Tensor> parts) {
        return c10::make_intrusive<CompressedTensor>(weight_of({std::move(description), std::move(parts)}));
      }))
      .def("scheme", [](const CompressedTensorRef& self) { return to_string(self->weight.scheme); })
      .def("shape", [](const CompressedTensorRef& self) { return self->weight.shape; })
      .def("numel", [](const CompressedTensorRef& self) { return self->weight.numel(); })
      .def("decode", [](const CompressedTensorRef& self) { return self->weight.decode(); })
      .def("stored_bytes", [](const CompressedTensorRef& self) { return self->weight.stored_bytes(); })
      .def("bits_per_weight", [](const CompressedTensorRef& self) { return self->weight.bits_per_weight(); })
      .def("n_centroids", [](const CompressedTensorRef& self) { return self->weight.n_centroids(); })
      .def("block_size", [](const CompressedTensorRef& self) { return self->weight.block_size; })
      .def("description", [](const CompressedTensorRef& self) { return describe_weight(self->weight).dump(); })
      .def("parts", [](const CompressedTensorRef& self) { return std::get<1>(state_of(self->weight)); })
      .def_pickle([](const CompressedTensorRef& self) { return state_of(self->weight); },
                  [](CompressedTensorState state) { return c10::make_intrusive<CompressedTensor>(weight_of(state)); });
}

}  // namespace qnoise::ops
