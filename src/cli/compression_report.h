#pragma once
// The tables `qnoise quantize`, `info` and `demo` print about a compressed model.
#include <cstdint>
#include <map>
#include <string>

#include "qnoise/ipq.h"
#include "qnoise/qnz_file.h"
#include "qnoise/training_task.h"

namespace qnoise::cli {

// One row per PQ layer: stage, shape, block size, K, relative error after k-means, k-means time.
std::string pq_layer_table(const IpqResult& ipq);
// One row per stored tensor: scheme, shape, bits per weight, bytes.
std::string tensor_table(const CompressedModel& model);
// Float32 size, compressed size (sum of stored tensors), file size and ratio, in MB (10^6 bytes)
// with MiB beside them.
std::string size_summary(const CompressedModel& model, uintmax_t file_bytes);
// The task's metrics on every split before and after compression.
std::string metrics_comparison(const TrainingTask& task, const std::map<std::string, SplitMetrics>& before,
                               const std::map<std::string, SplitMetrics>& after);
// "1.23 MB (1.17 MiB)".
std::string megabytes(double bytes);

}  // namespace qnoise::cli
