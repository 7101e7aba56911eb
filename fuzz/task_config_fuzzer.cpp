// Task configurations as JSON (training_task.h; `qnoise train --config`, and every checkpoint and
// .qnz file), parsed as the program parses JSON files (json_input.h): complete_task_config checks
// keys, types and values and fills in defaults, and a completed configuration completes to itself.
// (make_training_task also reads the data set.)
#include <nlohmann/json.hpp>

#include "fuzz_input.h"
#include "qnoise/json_input.h"
#include "qnoise/training_task.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qnoise::fuzz::expect_only_qnoise_errors([&] {
    const nlohmann::json json = qnoise::parse_json_input(std::string(data, data + size), "fuzz input");
    const nlohmann::json complete = qnoise::complete_task_config(json);
    if (qnoise::complete_task_config(complete) != complete) qnoise::fuzz::fail("a completed configuration changes");
  });
  return 0;
}
