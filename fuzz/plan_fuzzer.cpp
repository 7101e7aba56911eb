// Quantization plans as JSON (quantization_plan.h; `qnoise quantize --config plan.json`), parsed as
// the program parses JSON files (json_input.h): whatever parses must write back to JSON that parses
// to the same plan.
#include <nlohmann/json.hpp>

#include "fuzz_input.h"
#include "qnoise/json_input.h"
#include "qnoise/quantization_plan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qnoise::fuzz::expect_only_qnoise_errors([&] {
    const nlohmann::json json = qnoise::parse_json_input(std::string(data, data + size), "fuzz input");
    const nlohmann::json written = qnoise::to_json(qnoise::parse_quantization_plan(json));
    if (qnoise::to_json(qnoise::parse_quantization_plan(written)) != written)
      qnoise::fuzz::fail("a plan does not read back as written");
  });
  return 0;
}
