// .qnz files from Python: torch.classes.qnoise.QnzFile reads and validates one (read_qnz), and
// qnoise::write_qnz writes one atomically from named compressed tensors.
#include <nlohmann/json.hpp>
#include <torch/library.h>

#include "ops/compressed_tensor.h"
#include "ops/op_registry.h"
#include "qnoise/error.h"
#include "qnoise/qnz_file.h"

namespace qnoise::ops {

namespace {

struct QnzFile : torch::CustomClassHolder {
  explicit QnzFile(const std::string& path) : model(read_qnz(path)) {}
  CompressedModel model;
};

using QnzFileRef = c10::intrusive_ptr<QnzFile>;

void write_qnz_op(std::string path, std::vector<std::string> names,
                  std::vector<c10::intrusive_ptr<CompressedTensor>> weights, std::string metadata) {
  QNOISE_CHECK(names.size() == weights.size(), "write_qnz: ", names.size(), " names for ", weights.size(),
               " tensors");
  const nlohmann::json meta = parse_json_text(metadata, "write_qnz's metadata");
  CompressedModel model;
  model.task = meta.value("task", nlohmann::json());
  model.artifacts = meta.value("artifacts", nlohmann::json::object());
  model.plan = meta.value("plan", nlohmann::json::object());
  model.batch_norm_folded = meta.value("batch_norm_folded", false);
  for (size_t i = 0; i < names.size(); ++i) {
    QNOISE_CHECK(model.find(names[i]) == nullptr, "write_qnz: tensor '", names[i], "' is given twice");
    model.tensors.emplace_back(names[i], weights[i]->weight);
  }
  write_qnz(path, model);
}

}  // namespace

void register_file_ops(torch::Library& library) {
  library.class_<QnzFile>("QnzFile")
      .def(torch::init<std::string>())
      .def("names",
           [](const QnzFileRef& self) {
             std::vector<std::string> names;
             for (const auto& [name, weight] : self->model.tensors) names.push_back(name);
             return names;
           })
      .def("weight",
           [](const QnzFileRef& self, const std::string& name) {
             const CompressedWeight* weight = self->model.find(name);
             QNOISE_CHECK(weight != nullptr, "the file has no tensor '", name, "'");
             return c10::make_intrusive<CompressedTensor>(*weight);
           })
      .def("metadata",
           [](const QnzFileRef& self) {
             const CompressedModel& m = self->model;
             return nlohmann::json{{"task", m.task},
                                   {"artifacts", m.artifacts},
                                   {"plan", m.plan},
                                   {"batch_norm_folded", m.batch_norm_folded}}
                 .dump();
           })
      .def("stored_bytes", [](const QnzFileRef& self) { return self->model.stored_bytes(); })
      .def("float_bytes", [](const QnzFileRef& self) { return self->model.float_bytes(); });
  library.def("write_qnz", write_qnz_op);
}

}  // namespace qnoise::ops
