#include "cli/compression_report.h"

#include <sstream>

#include "cli/table.h"

namespace qnoise::cli {

std::string megabytes(double bytes) { return format("%.3f MB (%.3f MiB)", bytes / 1e6, bytes / (1024.0 * 1024.0)); }

std::string pq_layer_table(const IpqResult& ipq) {
  Table table({"layer", "stage", "shape", "block", "K", "rel. error", "k-means"});
  for (const auto& layer : ipq.layers)
    table.add_row({layer.name, layer.stage, shape_to_string(layer.shape), std::to_string(layer.block_size),
                   std::to_string(layer.n_centroids), format("%.4f", layer.relative_error),
                   format("%.2f s", layer.kmeans_seconds)});
  return table.render() + format("k-means of %zu layers: %.2f s in all\n", ipq.layers.size(), ipq.kmeans_seconds);
}

std::string tensor_table(const CompressedModel& model) {
  Table table({"tensor", "scheme", "shape", "bits/weight", "bytes"});
  for (const auto& [name, weight] : model.tensors) {
    std::string scheme = to_string(weight.scheme);
    if (weight.scheme == WeightScheme::PQ)
      scheme += format(" K=%lld d=%lld", static_cast<long long>(weight.n_centroids()),
                       static_cast<long long>(weight.block_size));
    table.add_row({name, scheme, shape_to_string(weight.shape), format("%.3f", weight.bits_per_weight()),
                   std::to_string(weight.stored_bytes())});
  }
  return table.render();
}

std::string size_summary(const CompressedModel& model, uintmax_t file_bytes) {
  const double float_bytes = static_cast<double>(model.float_bytes());
  const double stored = static_cast<double>(model.stored_bytes());
  const double file = static_cast<double>(file_bytes);
  const double metadata = static_cast<double>(model.task.dump().size() + qnz_artifact_bytes(model.artifacts) +
                                              model.plan.dump().size());
  std::ostringstream out;
  out << "float32 tensors:    " << megabytes(float_bytes) << "\n"
      << "compressed tensors: " << megabytes(stored)
      << format("  (%.2f bits per weight, %.2fx smaller)\n", 8 * stored / (float_bytes / 4), float_bytes / stored)
      << "file:               " << megabytes(file)
      << format("  (%.2fx smaller than float32 tensors) = tensors + %.0f bytes of metadata (configuration, "
                "vocabulary (deflated) or labels, plan) + %.0f bytes of tensor entries and padding\n",
                float_bytes / file, metadata, file - stored - metadata);
  return out.str();
}

std::string metrics_comparison(const TrainingTask& task, const std::map<std::string, SplitMetrics>& before,
                               const std::map<std::string, SplitMetrics>& after) {
  const std::string metric = task.primary_metric();
  const bool accuracy = metric == "accuracy";
  Table table({"split", metric + " float", metric + " compressed", "change"});
  for (const auto& [split, values] : before) {
    const double a = values.at(metric), b = after.at(split).at(metric);
    table.add_row({split, accuracy ? format("%.2f%%", 100 * a) : format("%.2f", a),
                   accuracy ? format("%.2f%%", 100 * b) : format("%.2f", b),
                   accuracy ? format("%+.2f points", 100 * (b - a)) : format("%+.1f%%", 100 * (b / a - 1))});
  }
  return table.render();
}

}  // namespace qnoise::cli
